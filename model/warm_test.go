package model

import (
	"testing"
	"unsafe"
)

// The warmers hand the pool exactly the memory a loop's piece reads first:
// the stored rows of the piece, matrix by matrix, and each kv head's cached
// keys then values up to the current position.
func TestWarmers(t *testing.T) {
	tiny := tinyConfig(4, 2)
	for _, half := range []bool{false, true} {
		m, err := Load(tiny, RandomWeights(tiny, 1), Options{Threads: 2, HalfKVCache: half})
		if err != nil {
			t.Fatal(err)
		}
		ly := &m.layers[0]
		wq, wk := ly.wq.(*f32Matrix), ly.wk.(*f32Matrix)
		w := rowsWarmer{ms: [3]Matrix{ly.wq, ly.wk, ly.wv}, n: 3}
		w.units, _, _ = decodeUnits(true, ly.wq, ly.wk, ly.wv)
		// Rows 48..80 of q (64 rows), k (32), v (32): q's rows 48..64, then k's 0..16.
		if b := w.Warm(48, 80, 0); len(b) != 16*64*4 || unsafe.Pointer(&b[0]) != unsafe.Pointer(&wq.w[48*64]) {
			t.Errorf("run 0: %d bytes at %p, want q's rows 48..64 (%d bytes at %p)", len(b), unsafe.SliceData(b), 16*64*4, &wq.w[48*64])
		}
		if b := w.Warm(48, 80, 1); len(b) != 16*64*4 || unsafe.Pointer(&b[0]) != unsafe.Pointer(&wk.w[0]) {
			t.Errorf("run 1: %d bytes at %p, want k's rows 0..16", len(b), unsafe.SliceData(b))
		}
		if b := w.Warm(48, 80, 2); b != nil {
			t.Errorf("run 2: %d bytes, want nil", len(b))
		}

		s := m.NewState(100)
		if _, err := m.Forward(s, []int{1, 2, 3}, false); err != nil {
			t.Fatal(err)
		}
		kv := kvWarmer{s: s, l: 1, hd: 16}
		size, keys, values := 4, unsafe.Pointer(nil), unsafe.Pointer(nil)
		if half {
			size, keys, values = 2, unsafe.Pointer(&s.k16[1][s.kvCap*16]), unsafe.Pointer(&s.v16[1][s.kvCap*16])
		} else {
			keys, values = unsafe.Pointer(&s.k[1][s.kvCap*16]), unsafe.Pointer(&s.v[1][s.kvCap*16])
		}
		for i, want := range []unsafe.Pointer{keys, values} {
			if b := kv.Warm(1, 2, i); len(b) != size*3*16 || unsafe.Pointer(&b[0]) != want {
				t.Errorf("half %v: kv run %d: %d bytes at %p, want %d at %p", half, i, len(b), unsafe.SliceData(b), size*3*16, want)
			}
		}
		if b := kv.Warm(1, 2, 2); b != nil {
			t.Errorf("half %v: kv run 2: %d bytes, want nil", half, len(b))
		}
		m.Close()
	}
}

// A decoding loop over rows of different sizes is cut by bytes: each
// range of units maps to whole rows, every row goes to exactly one range,
// and equal ranges of units hold about equal bytes.
func TestDecodeUnits(t *testing.T) {
	q := &f32Matrix{rows: 96, cols: 64, w: make([]float32, 96*64)} // 256 bytes a row
	k := &halfMatrix{rows: 32, cols: 64, w: make([]uint16, 32*64)} // 128
	v := &f32Matrix{rows: 32, cols: 64, w: make([]float32, 32*64)} // 256
	if units, total, grain := decodeUnits(true, q, q); units != [3]int{1, 1, 0} || total != 192 || grain != rowGrain {
		t.Fatalf("one row size: units %v, total %d, grain %d; want every row one unit", units, total, grain)
	}
	if units, total, _ := decodeUnits(false, q, k, v); units != [3]int{1, 1, 1} || total != 160 {
		t.Fatalf("batch: units %v, total %d; want every row one unit", units, total)
	}
	units, total, grain := decodeUnits(true, q, k, v)
	if units != [3]int{8, 4, 8} || total != 96*8+32*4+32*8 || grain != 4*rowGrain {
		t.Fatalf("units %v, total %d, grain %d", units, total, grain)
	}
	ms := []Matrix{q, k, v}
	for _, parts := range []int{2, 3, 7} {
		seen := make([][]int, len(ms))
		for i, x := range ms {
			seen[i] = make([]int, x.Rows())
		}
		var bytes []int
		for p := range parts {
			start, end := p*total/parts, (p+1)*total/parts
			b, base := 0, 0
			for i, x := range ms {
				lo, hi := unitRows(start, end, base, x.Rows(), units[i])
				for r := lo; r < hi; r++ {
					seen[i][r]++
				}
				b += (hi - lo) * len(storedRows(x, 0, 1))
				base += x.Rows() * units[i]
			}
			bytes = append(bytes, b)
		}
		for i := range seen {
			for r, n := range seen[i] {
				if n != 1 {
					t.Fatalf("%d parts: row %d of matrix %d taken %d times", parts, r, i, n)
				}
			}
		}
		all := (96+32)*256 + 32*128
		for p, b := range bytes {
			if d := b - all/parts; d < -256 || d > 256 {
				t.Errorf("%d parts: part %d reads %d bytes, want %d within a row", parts, p, b, all/parts)
			}
		}
	}
}
