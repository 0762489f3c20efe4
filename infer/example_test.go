package infer_test

import (
	"context"
	"fmt"

	"github.com/kvant-dev/kvant/infer"
)

// Run the project's own model greedily from a prompt.
func Example() {
	l, err := infer.Load("../testdata/tiny-llama/st-bf16", infer.Options{Threads: 1})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	res, err := l.Generate(context.Background(), "And the LORD said unto Moses,", infer.GenerateOptions{MaxTokens: 8, AddBOS: true}, nil)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", res.Text)
	// Output: " Go, I will bring forth the"
}
