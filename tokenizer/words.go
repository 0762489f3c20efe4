package tokenizer

import (
	"strings"
	"sync"
)

// Encoding a long text as one BPE sequence needs a priority queue as long
// as the text, which is slow. When no vocabulary piece contains the
// word-start marker ("▁") after another character, no merge can cross the
// point before a marker that follows a non-marker character, so the text
// can be cut there and each word merged alone with the same result. Words
// repeat, so their ids are cached.

// markerSplittable reports whether no piece has marker after a character
// that is not marker, so cutting before such markers is exact.
func markerSplittable(marker string, pieces []string, usable func(id int) bool) bool {
	if marker == "" {
		return false
	}
	for id, p := range pieces {
		if !usable(id) {
			continue
		}
		rest := p
		for strings.HasPrefix(rest, marker) {
			rest = rest[len(marker):]
		}
		if strings.Contains(rest, marker) {
			return false
		}
	}
	return true
}

// splitBeforeMarker calls emit for the parts of s cut before every marker
// that follows a character other than marker.
func splitBeforeMarker(s, marker string, emit func(string)) {
	start := 0
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], marker)
		if j < 0 {
			break
		}
		p := i + j
		if p > start && !strings.HasSuffix(s[start:p], marker) {
			emit(s[start:p])
			start = p
		}
		i = p + len(marker)
	}
	emit(s[start:])
}

// Bounds of the word cache: long words rarely repeat, and the cache is
// emptied when full so memory stays bounded.
const (
	maxCachedWord = 64
	maxCacheSize  = 1 << 17
)

// wordCache remembers the ids of words. It is safe for concurrent use.
type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

// encode appends the ids of word, computing them with f on a miss.
func (c *wordCache) encode(ids []int, word string, f func(ids []int, word string) []int) []int {
	if len(word) > maxCachedWord {
		return f(ids, word)
	}
	c.mu.RLock()
	cached, ok := c.m[word]
	c.mu.RUnlock()
	if ok {
		for _, id := range cached {
			ids = append(ids, int(id))
		}
		return ids
	}
	start := len(ids)
	ids = f(ids, word)
	out := make([]int32, len(ids)-start)
	for i, id := range ids[start:] {
		out[i] = int32(id)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCacheSize {
		c.m = make(map[string][]int32)
	}
	c.m[word] = out
	c.mu.Unlock()
	return ids
}
