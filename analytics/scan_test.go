package analytics_test

import "reflect"

func newOf(t reflect.Type) any { return reflect.New(t).Interface() }

func deref(vals []any) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = reflect.ValueOf(v).Elem().Interface()
	}
	return out
}
