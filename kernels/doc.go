// Package kernels holds kvant's numeric inner loops: dot products, row
// conversions from half floats, and the worker pool that splits a matrix
// product across threads. Every kernel has a pure-Go reference; faster
// variants must agree with it.
//
// Kernels work on contiguous rows. A weight matrix is stored row-major, one
// output feature per row, exactly as it lies in the memory-mapped .kvant
// file, so a kernel reads it in place.
package kernels
