package pipeline

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand"
	"path/filepath"
	"sort"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/quant"
)

// A 110M-parameter Llama shape (llama2.c's stories110M): dim 768, 12
// layers, 12 heads, hidden 2048, vocab 32000, tied embeddings.
var shape110M = model.Config{
	Architecture: model.ArchLlama, VocabSize: 32000, Dim: 768, Layers: 12, Heads: 12, KVHeads: 12,
	HeadDim: 64, HiddenDim: 2048, NormEps: 1e-5, RopeTheta: 10000, MaxSeqLen: 1024, TiedEmbeddings: true,
}

// genTensor serves f32 values N(0, 0.02) from a shared 4 MiB pool of
// random bytes, starting at a per-tensor offset, so the benchmark measures
// quantization and writing rather than a random number generator or a disk.
type genTensor struct {
	info format.TensorInfo
	pool []byte
	seed int
}

func (g genTensor) Info() format.TensorInfo { return g.info }
func (g genTensor) Open() (io.Reader, error) {
	n, _ := format.PlainByteSize(g.info.DType, g.info.Shape)
	return io.LimitReader(&cycle{pool: g.pool, off: (g.seed * 4096) % len(g.pool)}, n), nil
}

type cycle struct {
	pool []byte
	off  int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := copy(p, c.pool[c.off:])
	c.off = (c.off + n) % len(c.pool)
	return n, nil
}

func generated110M() (*convert.Model, int64) {
	rng := rand.New(rand.NewSource(1))
	pool := make([]byte, 4<<20)
	for i := 0; i < len(pool); i += 4 {
		binary.LittleEndian.PutUint32(pool[i:], math.Float32bits(float32(rng.NormFloat64()*0.02)))
	}
	shapes := convert.ExpectedShapes(shape110M)
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	m := &convert.Model{Format: "generated", Config: shape110M}
	var total int64
	for i, n := range names {
		info := format.TensorInfo{Name: n, DType: format.F32, Shape: shapes[n]}
		m.Tensors = append(m.Tensors, genTensor{info, pool, i})
		b, _ := format.PlainByteSize(format.F32, info.Shape)
		total += b
	}
	return m, total
}

// BenchmarkQuantize110M quantizes the whole 110M model per iteration,
// output written and fsynced; throughput is in MB/s of f32 input. Run with
// -benchtime 1x or 2x: one iteration is 440 MB.
func BenchmarkQuantize110M(b *testing.B) {
	m, total := generated110M()
	for _, typ := range []format.DType{quant.Q8, quant.Q4} {
		for _, method := range []quant.Method{quant.RTN, quant.Search} {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", typ, method, threads), func(b *testing.B) {
					out := filepath.Join(b.TempDir(), "m.kvant")
					b.SetBytes(total)
					for b.Loop() {
						if _, err := Quantize(m, out, Options{Type: typ, Method: method, Threads: threads}); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
