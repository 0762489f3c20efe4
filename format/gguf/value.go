package gguf

import (
	"fmt"
	"math"
)

// A Value is one typed metadata value. Scalars hold the Go type matching
// their GGUF type (uint8 ... float64, bool, string); arrays hold a slice of
// the element type ([]uint32, []string, ...). Nested arrays are not
// supported: no model metadata uses them and llama.cpp refuses them too.
type Value struct {
	typ  ValueType
	elem ValueType // element type when typ == TypeArray
	v    any
}

// A KeyValue is one metadata entry, in file order.
type KeyValue struct {
	Key   string
	Value Value
}

// NewValue wraps a Go value: one of uint8, int8, uint16, int16, uint32,
// int32, uint64, int64, float32, float64, bool, string, or a slice of one of
// these. Any other type is an ErrBadValueType error. Slices are not copied.
func NewValue(x any) (Value, error) {
	switch x := x.(type) {
	case Value:
		return x, nil
	case uint8:
		return Value{typ: TypeUint8, v: x}, nil
	case int8:
		return Value{typ: TypeInt8, v: x}, nil
	case uint16:
		return Value{typ: TypeUint16, v: x}, nil
	case int16:
		return Value{typ: TypeInt16, v: x}, nil
	case uint32:
		return Value{typ: TypeUint32, v: x}, nil
	case int32:
		return Value{typ: TypeInt32, v: x}, nil
	case uint64:
		return Value{typ: TypeUint64, v: x}, nil
	case int64:
		return Value{typ: TypeInt64, v: x}, nil
	case float32:
		return Value{typ: TypeFloat32, v: x}, nil
	case float64:
		return Value{typ: TypeFloat64, v: x}, nil
	case bool:
		return Value{typ: TypeBool, v: x}, nil
	case string:
		return Value{typ: TypeString, v: x}, nil
	case []uint8:
		return Value{typ: TypeArray, elem: TypeUint8, v: x}, nil
	case []int8:
		return Value{typ: TypeArray, elem: TypeInt8, v: x}, nil
	case []uint16:
		return Value{typ: TypeArray, elem: TypeUint16, v: x}, nil
	case []int16:
		return Value{typ: TypeArray, elem: TypeInt16, v: x}, nil
	case []uint32:
		return Value{typ: TypeArray, elem: TypeUint32, v: x}, nil
	case []int32:
		return Value{typ: TypeArray, elem: TypeInt32, v: x}, nil
	case []uint64:
		return Value{typ: TypeArray, elem: TypeUint64, v: x}, nil
	case []int64:
		return Value{typ: TypeArray, elem: TypeInt64, v: x}, nil
	case []float32:
		return Value{typ: TypeArray, elem: TypeFloat32, v: x}, nil
	case []float64:
		return Value{typ: TypeArray, elem: TypeFloat64, v: x}, nil
	case []bool:
		return Value{typ: TypeArray, elem: TypeBool, v: x}, nil
	case []string:
		return Value{typ: TypeArray, elem: TypeString, v: x}, nil
	}
	return Value{}, fmt.Errorf("%w: Go type %T has no GGUF equivalent", ErrBadValueType, x)
}

// Type returns the value's GGUF type.
func (v Value) Type() ValueType { return v.typ }

// ElemType returns the element type of an array value.
func (v Value) ElemType() ValueType { return v.elem }

// Interface returns the Go value: a scalar or a slice, as listed at NewValue.
func (v Value) Interface() any { return v.v }

// Len returns the number of elements of an array, and 0 for a scalar.
func (v Value) Len() int {
	switch a := v.v.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float32:
		return len(a)
	case []float64:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	}
	return 0
}

// String formats the value for humans; long arrays are abbreviated.
func (v Value) String() string {
	if v.typ == TypeArray {
		return fmt.Sprintf("[%d]%s", v.Len(), v.elem)
	}
	return fmt.Sprint(v.v)
}

func (v Value) describe() string {
	if v.typ == TypeArray {
		return "array of " + v.elem.String()
	}
	return v.typ.String()
}

// AsString returns a string value.
func (v Value) AsString() (string, bool) {
	s, ok := v.v.(string)
	return s, ok
}

// AsBool returns a bool value.
func (v Value) AsBool() (bool, bool) {
	b, ok := v.v.(bool)
	return b, ok
}

// AsUint returns an integer value of any width or signedness as uint64;
// it fails for negative values.
func (v Value) AsUint() (uint64, bool) {
	switch x := v.v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	}
	if i, ok := v.AsInt(); ok && i >= 0 {
		return uint64(i), true
	}
	return 0, false
}

// AsInt returns an integer value of any width or signedness as int64; it
// fails for a uint64 above math.MaxInt64.
func (v Value) AsInt() (int64, bool) {
	switch x := v.v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}

// AsFloat returns a float32 or float64 value as float64.
func (v Value) AsFloat() (float64, bool) {
	switch x := v.v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}
