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
	typ := chType
	if c.nullable {
		typ = strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")")
	}
	if c.nullable && typ != "Float64" && typ != "UInt64" {
		return nil, fmt.Errorf("column %s: unsupported type %s", name, chType)
	}
	if strings.HasPrefix(typ, "Array(") {
		if err := arrayColumn(c, strings.TrimSuffix(strings.TrimPrefix(typ, "Array("), ")"), md); err != nil {
			return nil, err
		}
		return c, nil
	}
	appendUint := func(buf []byte, x uint64) []byte { return strconv.AppendUint(buf, x, 10) }
	switch typ {
	case "Float64":
		scalarOf(c, arrow.PrimitiveTypes.Float64, md, func(b array.Builder, x float64) { b.(*array.Float64Builder).Append(x) },
			func(buf []byte, x float64) []byte { return strconv.AppendFloat(buf, x, 'g', -1, 64) })
	case "UInt8":
		scalarOf(c, arrow.PrimitiveTypes.Uint8, md, func(b array.Builder, x uint8) { b.(*array.Uint8Builder).Append(x) },
			func(buf []byte, x uint8) []byte { return appendUint(buf, uint64(x)) })
	case "UInt16":
		scalarOf(c, arrow.PrimitiveTypes.Uint16, md, func(b array.Builder, x uint16) { b.(*array.Uint16Builder).Append(x) },
			func(buf []byte, x uint16) []byte { return appendUint(buf, uint64(x)) })
	case "UInt32":
		scalarOf(c, arrow.PrimitiveTypes.Uint32, md, func(b array.Builder, x uint32) { b.(*array.Uint32Builder).Append(x) },
			func(buf []byte, x uint32) []byte { return appendUint(buf, uint64(x)) })
	case "UInt64":
		scalarOf(c, arrow.PrimitiveTypes.Uint64, md, func(b array.Builder, x uint64) { b.(*array.Uint64Builder).Append(x) }, appendUint)
	case "String":
		scalarOf(c, arrow.BinaryTypes.String, md, func(b array.Builder, x string) { b.(*array.StringBuilder).Append(x) },
			func(buf []byte, x string) []byte { return append(buf, x...) })
	case "UUID":
		// Text, not FixedSizeBinary(16): what pandas, R and DuckDB users
		// compare with and join on.
		scalarOf(c, arrow.BinaryTypes.String, md, func(b array.Builder, x uuid.UUID) { b.(*array.StringBuilder).Append(x.String()) },
			func(buf []byte, x uuid.UUID) []byte { return append(buf, x.String()...) })
	case "DateTime":
		scalarOf(c, &arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}, md,
			func(b array.Builder, x time.Time) { b.(*array.TimestampBuilder).Append(arrow.Timestamp(x.Unix())) },
			func(buf []byte, x time.Time) []byte { return x.UTC().AppendFormat(buf, "2006-01-02T15:04:05Z") })
	case "Date":
		scalarOf(c, arrow.FixedWidthTypes.Date32, md, func(b array.Builder, x time.Time) { b.(*array.Date32Builder).Append(arrow.Date32FromTime(x)) },
			func(buf []byte, x time.Time) []byte { return x.UTC().AppendFormat(buf, time.DateOnly) })
	default:
		return nil, fmt.Errorf("column %s: unsupported type %s", name, chType)
	}
	return c, nil
}

// scalarOf makes c a column of T: scanned into a T, or into a *T (nil for
// NULL) when the column is Nullable.
func scalarOf[T any](c *column, typ arrow.DataType, md arrow.Metadata, add func(array.Builder, T), format func([]byte, T) []byte) {
	c.field = arrow.Field{Name: c.name, Type: typ, Nullable: c.nullable, Metadata: md}
	if c.nullable {
		v := new(*T)
		c.dest = v
		c.appendTo = func(b array.Builder) {
			if *v == nil {
				b.AppendNull()
			} else {
				add(b, **v)
			}
		}
		c.csv = func(buf []byte) []byte {
			if *v == nil {
				return buf
			}
			return format(buf, **v)
		}
		return
	}
	v := new(T)
	c.dest = v
	c.appendTo = func(b array.Builder) { add(b, *v) }
	c.csv = func(buf []byte) []byte { return format(buf, *v) }
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

// appendCSVField appends one field, quoted when it holds a comma, quote or
// line break (RFC 4180). A text field that starts with = + - @ (or a tab or
// carriage return) is neutralised with a leading apostrophe, so that a
// spreadsheet opening the file shows it rather than running it as a
// formula (CSV injection); numbers (text false) are written as they are.
func appendCSVField(dst, field []byte, text bool) []byte {
	formula := text && len(field) > 0 && strings.IndexByte("=+-@\t\r", field[0]) >= 0
	quote := formula
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
	if formula {
		dst = append(dst, '\'')
	}
	for _, ch := range field {
		if ch == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, ch)
	}
	return append(dst, '"')
}
