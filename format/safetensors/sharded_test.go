package safetensors

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
)

// shardTensors returns n bf16 tensors of 16 bytes each with distinct data.
func shardTensors(n int) ([]WriteTensor, [][]byte) {
	var ts []WriteTensor
	var data [][]byte
	for i := range n {
		d := bytes.Repeat([]byte{byte(i + 1)}, 16)
		data = append(data, d)
		ts = append(ts, WriteTensor{Name: "layers." + strconv.Itoa(i) + ".weight", DType: format.BF16, Shape: []int64{2, 4}, Data: bytes.NewReader(d)})
	}
	return ts, data
}

func TestShardedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ts, data := shardTensors(7)
	// 40-byte shards hold two 16-byte tensors each: 4 shards.
	indexPath, err := WriteSharded(dir, ts, 40, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	if indexPath != filepath.Join(dir, IndexFileName) {
		t.Errorf("index at %s", indexPath)
	}
	for _, name := range []string{"model-00001-of-00004.safetensors", "model-00004-of-00004.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	s, err := OpenIndex(indexPath)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.Shards()) != 4 {
		t.Errorf("%d shards, want 4", len(s.Shards()))
	}
	got := s.Tensors()
	if len(got) != 7 {
		t.Fatalf("%d tensors, want 7", len(got))
	}
	for i, st := range got {
		if st.Info().Name != ts[i].Name {
			t.Errorf("tensor %d = %s, want %s (index order)", i, st.Info().Name, ts[i].Name)
		}
		if b := readAll(t, st); !bytes.Equal(b, data[i]) {
			t.Errorf("%s data = %v, want %v", ts[i].Name, b, data[i])
		}
	}
	if md := s.Metadata(); md["format"] != "pt" || len(md) != 1 {
		t.Errorf("Metadata = %v", md)
	}
	if im := s.IndexMetadata(); im["total_size"] != "112" {
		t.Errorf("IndexMetadata = %v, want total_size 112", im)
	}
	if tt, err := s.Tensor("layers.6.weight"); err != nil || !strings.HasSuffix(tt.file.Name(), "model-00004-of-00004.safetensors") {
		t.Errorf("Tensor(layers.6.weight) = %v, %v", tt, err)
	}
	if _, err := s.Tensor("nope"); !errors.Is(err, ErrTensorNotFound) {
		t.Errorf("Tensor(nope): %v", err)
	}

	src, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := src.(*Sharded); !ok || len(src.Tensors()) != 7 {
		t.Errorf("OpenDir = %T with %d tensors", src, len(src.Tensors()))
	}
	src.Close()
}

func TestOpenDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDir(dir); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("empty dir: %v, want ErrNoCheckpoint", err)
	}
	ts, _ := shardTensors(1)
	if err := WriteFile(filepath.Join(dir, "consolidated.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	src, err := OpenDir(dir)
	if err != nil {
		t.Fatalf("single unconventional file: %v", err)
	}
	src.Close()
	ts, _ = shardTensors(2)
	if err := WriteFile(filepath.Join(dir, "other.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(dir); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("two files: %v, want ErrNoCheckpoint (ambiguous)", err)
	}
	ts, _ = shardTensors(3)
	if err := WriteFile(filepath.Join(dir, SingleFileName), ts, nil); err != nil {
		t.Fatal(err)
	}
	src, err = OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if f, ok := src.(*File); !ok || len(f.Tensors()) != 3 {
		t.Errorf("OpenDir picked %T, want model.safetensors with 3 tensors", src)
	}
}

// writeShard writes a shard with the given tensor names.
func writeShard(t *testing.T, dir, file string, names ...string) {
	t.Helper()
	var ts []WriteTensor
	for _, n := range names {
		ts = append(ts, WriteTensor{Name: n, DType: format.U8, Shape: []int64{2}, Data: bytes.NewReader([]byte{1, 2})})
	}
	if err := WriteFile(filepath.Join(dir, file), ts, nil); err != nil {
		t.Fatal(err)
	}
}

func TestShardedErrors(t *testing.T) {
	cases := []struct {
		name   string
		shards map[string][]string // shard file -> tensor names
		index  string              // raw index JSON
		want   error
		tensor string
	}{
		{"missing shard", map[string][]string{"s1": {"a"}},
			`{"metadata":{},"weight_map":{"a":"s1","b":"s2"}}`, ErrMissingShard, "b"},
		{"tensor absent from shard", map[string][]string{"s1": {"a"}, "s2": {"c"}},
			`{"weight_map":{"a":"s1","b":"s2","c":"s2"}}`, ErrNotInShard, "b"},
		{"tensor in two shards", map[string][]string{"s1": {"a", "b"}, "s2": {"b", "c"}},
			`{"weight_map":{"a":"s1","b":"s1","c":"s2"}}`, ErrInTwoShards, "b"},
		{"stray tensor", map[string][]string{"s1": {"a", "stray"}},
			`{"weight_map":{"a":"s1"}}`, ErrStrayTensor, "stray"},
		{"total_size wrong", map[string][]string{"s1": {"a", "b"}},
			`{"metadata":{"total_size":5},"weight_map":{"a":"s1","b":"s1"}}`, ErrTotalSize, ""},
		{"total_size negative", map[string][]string{"s1": {"a"}},
			`{"metadata":{"total_size":-2},"weight_map":{"a":"s1"}}`, ErrInvalidIndex, ""},
		{"total_size string", map[string][]string{"s1": {"a"}},
			`{"metadata":{"total_size":"2"},"weight_map":{"a":"s1"}}`, ErrInvalidIndex, ""},
		{"duplicate weight_map key", map[string][]string{"s1": {"a"}},
			`{"weight_map":{"a":"s1","a":"s1"}}`, ErrDuplicateName, "a"},
		{"duplicate weight_map", map[string][]string{"s1": {"a"}},
			`{"weight_map":{"a":"s1"},"weight_map":{"a":"s1"}}`, ErrInvalidIndex, ""},
		{"escaping shard path", map[string][]string{"s1": {"a"}},
			`{"weight_map":{"a":"../s1"}}`, ErrInvalidIndex, "a"},
		{"absolute shard path", map[string][]string{"s1": {"a"}},
			`{"weight_map":{"a":"/etc/passwd"}}`, ErrInvalidIndex, "a"},
		{"shard name not string", map[string][]string{"s1": {"a"}},
			`{"weight_map":{"a":1}}`, ErrInvalidIndex, "a"},
		{"no weight_map", map[string][]string{"s1": {"a"}},
			`{"metadata":{"total_size":2}}`, ErrInvalidIndex, ""},
		{"not json", map[string][]string{"s1": {"a"}},
			`{"weight_map":{"a":"s1"`, ErrInvalidIndex, ""},
		{"trailing data", map[string][]string{"s1": {"a"}},
			`{"weight_map":{"a":"s1"}} []`, ErrInvalidIndex, ""},
		{"corrupt shard", map[string][]string{"s1": {"a"}, "bad": nil},
			`{"weight_map":{"a":"s1","b":"bad"}}`, ErrTruncated, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for file, names := range c.shards {
				if names == nil {
					os.WriteFile(filepath.Join(dir, file), []byte{1, 2, 3}, 0o644)
					continue
				}
				writeShard(t, dir, file, names...)
			}
			indexPath := filepath.Join(dir, IndexFileName)
			os.WriteFile(indexPath, []byte(c.index), 0o644)
			s, err := OpenIndex(indexPath)
			if err == nil {
				s.Close()
				t.Fatalf("OpenIndex succeeded, want %v", c.want)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %T is not *Error: %v", err, err)
			}
			if e.Tensor != c.tensor {
				t.Errorf("error names tensor %q, want %q: %v", e.Tensor, c.tensor, err)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error does not name a file: %v", err)
			}
			t.Log(err)
		})
	}
}

func TestMissingShardIsNotExist(t *testing.T) {
	dir := t.TempDir()
	ts, _ := shardTensors(4)
	indexPath, err := WriteSharded(dir, ts, 32, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
	_, err = OpenIndex(indexPath)
	if !errors.Is(err, ErrMissingShard) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "model-00002-of-00002.safetensors") {
		t.Errorf("err = %v, want ErrMissingShard naming the shard", err)
	}
}

// transformers writes total_size as an integer; some exporters write a
// float. Accept an integral float, and non-numeric extra metadata.
func TestIndexMetadataVariants(t *testing.T) {
	dir := t.TempDir()
	writeShard(t, dir, "s1", "a", "b")
	indexPath := filepath.Join(dir, IndexFileName)
	os.WriteFile(indexPath, []byte(`{"metadata":{"total_size":4.0,"total_parameters":4,"note":"x"},"weight_map":{"b":"s1","a":"./s1"}}`), 0o644)
	s, err := OpenIndex(indexPath)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.Shards()) != 1 {
		t.Errorf("./s1 and s1 opened as %d shards", len(s.Shards()))
	}
	if im := s.IndexMetadata(); im["total_parameters"] != "4" || im["note"] != "x" {
		t.Errorf("IndexMetadata = %v", im)
	}
	if n := s.Tensors()[0].Info().Name; n != "b" {
		t.Errorf("first tensor %s, want b (index order)", n)
	}
}
