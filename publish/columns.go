package publish

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/google/uuid"
)

// column is one published column: how it is scanned from ClickHouse, how it
// is appended to an Arrow builder and how it is written as CSV. Columns are
// built from the table's ClickHouse types (system.columns), so a test added
// to schemas/ is exported with no change here.
type column struct {
	name, chType, doc string
	field             arrow.Field
	// dest is what rows.Scan fills; it is reused from row to row.
	dest any
	// appendTo appends the scanned value to b.
	appendTo func(b array.Builder)
	// csv appends the scanned value as one CSV field (not yet quoted).
	csv func(buf []byte) []byte
	// text: the value is a JSON string; nullable: an empty CSV field is NULL.
	text, nullable bool
}

// json appends the scanned value as a JSON value.
func (c *column) json(buf []byte) []byte {
	start := len(buf)
	buf = c.csv(buf)
	v := buf[start:]
	switch {
	case c.text:
		s := string(v)
		return jsonString(buf[:start], []byte(s))
	case c.nullable && len(v) == 0, string(v) == "NaN", string(v) == "+Inf", string(v) == "-Inf":
		return append(buf[:start], "null"...)
	}
	return buf
}

// newColumn makes the column of a ClickHouse type, or an error for a type
// that the dumps do not know (a migration added one: teach it here).
func newColumn(name, chType, doc string) (*column, error) {
	c := &column{name: name, chType: chType, doc: doc}
	c.nullable = strings.HasPrefix(chType, "Nullable(")
	switch chType {
	case "String", "UUID", "DateTime", "Date":
		c.text = true
	}
	md := arrow.NewMetadata([]string{"description", "clickhouse_type"}, []string{doc, chType})
	typ, nullable := chType, false
	if strings.HasPrefix(typ, "Nullable(") {
		typ, nullable = strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")"), true
	}
	if strings.HasPrefix(typ, "Array(") {
		if nullable {
			return nil, fmt.Errorf("column %s: unsupported type %s", name, chType)
		}
		if err := arrayColumn(c, strings.TrimSuffix(strings.TrimPrefix(typ, "Array("), ")"), md); err != nil {
			return nil, err
		}
		return c, nil
	}
	if typ == "Date" {
		if nullable {
			return nil, fmt.Errorf("column %s: unsupported type %s", name, chType)
		}
		v := new(time.Time)
		c.dest, c.text = v, true
		c.field = arrow.Field{Name: name, Type: arrow.FixedWidthTypes.Date32, Metadata: md}
		c.appendTo = func(b array.Builder) { b.(*array.Date32Builder).Append(arrow.Date32FromTime(*v)) }
		c.csv = func(buf []byte) []byte { return v.UTC().AppendFormat(buf, "2006-01-02") }
		return c, nil
	}
	switch typ {
	case "Float64":
		c.field = arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Float64, Nullable: nullable, Metadata: md}
		if nullable {
			v := new(*float64)
			c.dest = v
			c.appendTo = func(b array.Builder) {
				if *v == nil {
					b.AppendNull()
				} else {
					b.(*array.Float64Builder).Append(**v)
				}
			}
			c.csv = func(buf []byte) []byte {
				if *v == nil {
					return buf
				}
				return strconv.AppendFloat(buf, **v, 'g', -1, 64)
			}
		} else {
			v := new(float64)
			c.dest = v
			c.appendTo = func(b array.Builder) { b.(*array.Float64Builder).Append(*v) }
			c.csv = func(buf []byte) []byte { return strconv.AppendFloat(buf, *v, 'g', -1, 64) }
		}
	case "UInt8", "UInt16", "UInt32", "UInt64":
		return uintColumn(c, typ, nullable, md)
	case "String":
		if nullable {
			return nil, fmt.Errorf("column %s: unsupported type %s", name, chType)
		}
		v := new(string)
		c.dest = v
		c.field = arrow.Field{Name: name, Type: arrow.BinaryTypes.String, Metadata: md}
		c.appendTo = func(b array.Builder) { b.(*array.StringBuilder).Append(*v) }
		c.csv = func(buf []byte) []byte { return append(buf, *v...) }
	case "UUID":
		if nullable {
			return nil, fmt.Errorf("column %s: unsupported type %s", name, chType)
		}
		// Text, not FixedSizeBinary(16): what pandas, R and DuckDB users
		// compare with and join on.
		v := new(uuid.UUID)
		c.dest = v
		c.field = arrow.Field{Name: name, Type: arrow.BinaryTypes.String, Metadata: md}
		c.appendTo = func(b array.Builder) { b.(*array.StringBuilder).Append(v.String()) }
		c.csv = func(buf []byte) []byte { return append(buf, v.String()...) }
	case "DateTime":
		if nullable {
			return nil, fmt.Errorf("column %s: unsupported type %s", name, chType)
		}
		v := new(time.Time)
		c.dest = v
		c.field = arrow.Field{Name: name, Type: &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}, Metadata: md}
		c.appendTo = func(b array.Builder) { b.(*array.TimestampBuilder).Append(arrow.Timestamp(v.Unix())) }
		c.csv = func(buf []byte) []byte { return v.UTC().AppendFormat(buf, "2006-01-02T15:04:05Z") }
	default:
		return nil, fmt.Errorf("column %s: unsupported type %s", name, chType)
	}
	return c, nil
}

// arrayColumn makes c an Array(elem) column: an Arrow list, written in CSV
// as a JSON array (what ClickHouse's own CSV looks like, and what pandas,
// R and DuckDB parse with their JSON functions).
func arrayColumn(c *column, elem string, md arrow.Metadata) error {
	switch elem {
	case "Float64":
		listOf(c, arrow.PrimitiveTypes.Float64, md, func(b array.Builder, x float64) { b.(*array.Float64Builder).Append(x) }, appendFloat)
	case "UInt8":
		listOf(c, arrow.PrimitiveTypes.Uint8, md, func(b array.Builder, x uint8) { b.(*array.Uint8Builder).Append(x) },
			func(buf []byte, x uint8) []byte { return strconv.AppendUint(buf, uint64(x), 10) })
	case "UInt16":
		listOf(c, arrow.PrimitiveTypes.Uint16, md, func(b array.Builder, x uint16) { b.(*array.Uint16Builder).Append(x) },
			func(buf []byte, x uint16) []byte { return strconv.AppendUint(buf, uint64(x), 10) })
	case "UInt32":
		listOf(c, arrow.PrimitiveTypes.Uint32, md, func(b array.Builder, x uint32) { b.(*array.Uint32Builder).Append(x) },
			func(buf []byte, x uint32) []byte { return strconv.AppendUint(buf, uint64(x), 10) })
	case "UInt64":
		listOf(c, arrow.PrimitiveTypes.Uint64, md, func(b array.Builder, x uint64) { b.(*array.Uint64Builder).Append(x) },
			func(buf []byte, x uint64) []byte { return strconv.AppendUint(buf, x, 10) })
	case "String":
		listOf(c, arrow.BinaryTypes.String, md, func(b array.Builder, x string) { b.(*array.StringBuilder).Append(x) },
			func(buf []byte, x string) []byte { return jsonString(buf, []byte(x)) })
	case "Array(Float64)":
		listOf(c, arrow.ListOf(arrow.PrimitiveTypes.Float64), md, func(b array.Builder, xs []float64) {
			lb := b.(*array.ListBuilder)
			lb.Append(true)
			lb.ValueBuilder().(*array.Float64Builder).AppendValues(xs, nil)
		}, func(buf []byte, xs []float64) []byte { return appendJSONArray(buf, xs, appendFloat) })
	default:
		return fmt.Errorf("column %s: unsupported type Array(%s)", c.name, elem)
	}
	return nil
}

// listOf makes c a list column of T.
func listOf[T any](c *column, elem arrow.DataType, md arrow.Metadata, add func(array.Builder, T), format func([]byte, T) []byte) {
	v := new([]T)
	c.dest = v
	c.field = arrow.Field{Name: c.name, Type: arrow.ListOf(elem), Metadata: md}
	c.appendTo = func(b array.Builder) {
		lb := b.(*array.ListBuilder)
		lb.Append(true)
		vb := lb.ValueBuilder()
		for _, x := range *v {
			add(vb, x)
		}
	}
	c.csv = func(buf []byte) []byte { return appendJSONArray(buf, *v, format) }
}

func appendJSONArray[T any](buf []byte, xs []T, format func([]byte, T) []byte) []byte {
	buf = append(buf, '[')
	for i, x := range xs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = format(buf, x)
	}
	return append(buf, ']')
}

// appendFloat writes a float as JSON does; NaN and infinities, which JSON
// lacks and a record never holds, become null.
func appendFloat(buf []byte, x float64) []byte {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return append(buf, "null"...)
	}
	return strconv.AppendFloat(buf, x, 'g', -1, 64)
}

func uintColumn(c *column, typ string, nullable bool, md arrow.Metadata) (*column, error) {
	if nullable && typ != "UInt64" {
		return nil, fmt.Errorf("column %s: unsupported type Nullable(%s)", c.name, typ)
	}
	switch typ {
	case "UInt8":
		v := new(uint8)
		c.dest = v
		c.field = arrow.Field{Name: c.name, Type: arrow.PrimitiveTypes.Uint8, Metadata: md}
		c.appendTo = func(b array.Builder) { b.(*array.Uint8Builder).Append(*v) }
		c.csv = func(buf []byte) []byte { return strconv.AppendUint(buf, uint64(*v), 10) }
	case "UInt16":
		v := new(uint16)
		c.dest = v
		c.field = arrow.Field{Name: c.name, Type: arrow.PrimitiveTypes.Uint16, Metadata: md}
		c.appendTo = func(b array.Builder) { b.(*array.Uint16Builder).Append(*v) }
		c.csv = func(buf []byte) []byte { return strconv.AppendUint(buf, uint64(*v), 10) }
	case "UInt32":
		v := new(uint32)
		c.dest = v
		c.field = arrow.Field{Name: c.name, Type: arrow.PrimitiveTypes.Uint32, Metadata: md}
		c.appendTo = func(b array.Builder) { b.(*array.Uint32Builder).Append(*v) }
		c.csv = func(buf []byte) []byte { return strconv.AppendUint(buf, uint64(*v), 10) }
	case "UInt64":
		c.field = arrow.Field{Name: c.name, Type: arrow.PrimitiveTypes.Uint64, Nullable: nullable, Metadata: md}
		if nullable {
			v := new(*uint64)
			c.dest = v
			c.appendTo = func(b array.Builder) {
				if *v == nil {
					b.AppendNull()
				} else {
					b.(*array.Uint64Builder).Append(**v)
				}
			}
			c.csv = func(buf []byte) []byte {
				if *v == nil {
					return buf
				}
				return strconv.AppendUint(buf, **v, 10)
			}
		} else {
			v := new(uint64)
			c.dest = v
			c.appendTo = func(b array.Builder) { b.(*array.Uint64Builder).Append(*v) }
			c.csv = func(buf []byte) []byte { return strconv.AppendUint(buf, *v, 10) }
		}
	}
	return c, nil
}

// appendCSVField appends one field, quoted when it holds a comma, quote or
// line break (RFC 4180).
func appendCSVField(dst, field []byte) []byte {
	quote := false
	for _, ch := range field {
		if ch == ',' || ch == '"' || ch == '\n' || ch == '\r' {
			quote = true
			break
		}
	}
	if !quote {
		return append(dst, field...)
	}
	dst = append(dst, '"')
	for _, ch := range field {
		if ch == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, ch)
	}
	return append(dst, '"')
}
