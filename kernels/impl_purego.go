//go:build purego || !amd64

package kernels

// Without assembly, generic is the only variant.
var asmImpls []*impl
