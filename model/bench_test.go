package model

import (
	"fmt"
	"sync"
	"testing"
)

var (
	synth110MOnce sync.Once
	synth110M     Tensors
)

func load110M(b *testing.B, threads int) *Model {
	synth110MOnce.Do(func() { synth110M = RandomWeights(Shape110M, 1) })
	m, err := Load(Shape110M, synth110M, Options{Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	return m
}

// BenchmarkPrefill110M reports prompt-processing speed (a 128-token batch).
func BenchmarkPrefill110M(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m := load110M(b, threads)
			st := m.NewState(256)
			prompt := make([]int, 128)
			for i := range prompt {
				prompt[i] = (i * 7919) % Shape110M.VocabSize
			}
			for b.Loop() {
				st.Reset()
				if _, err := m.Forward(st, prompt, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(prompt)*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkDecode110M reports generation speed: one token at a time after a
// 16-token prompt.
func BenchmarkDecode110M(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m := load110M(b, threads)
			st := m.NewState(1024)
			for b.Loop() {
				if st.Pos() >= 1000 {
					st.Truncate(16)
				}
				if _, err := m.Forward(st, []int{st.Pos() % 1000}, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
