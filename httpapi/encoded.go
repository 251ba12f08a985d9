package httpapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
)

// recordCache keeps the JSON of the records a list answer is made of, by
// the record's pointer. The FSM never changes a stored record in place
// (a change stores a changed copy), so a pointer stands for one content for
// as long as anything holds it: a list of 10,000 shards, or of hundreds of
// actions with their full histories, costs one encoding of what changed
// since the last list, not of everything.
//
// The cache holds what the latest list held and nothing else; a list that
// finds every record already encoded changes nothing.
type recordCache[T any] struct {
	encode func(*T) any
	cur    atomic.Pointer[map[*T][]byte]
}

func newRecordCache[T any](view func(*T) any) *recordCache[T] {
	c := &recordCache[T]{encode: view}
	m := map[*T][]byte{}
	c.cur.Store(&m)
	return c
}

// list returns the JSON of the view of each of recs, in order.
func (c *recordCache[T]) list(recs []*T) ([][]byte, error) {
	cur := *c.cur.Load()
	parts := make([][]byte, len(recs))
	missed := false
	for i, r := range recs {
		b, ok := cur[r]
		if !ok {
			var err error
			if b, err = json.Marshal(c.encode(r)); err != nil {
				return nil, fmt.Errorf("encode %T: %w", r, err)
			}
			missed = true
		}
		parts[i] = b
	}
	if missed || len(cur) != len(recs) {
		next := make(map[*T][]byte, len(recs))
		for i, r := range recs {
			next[r] = parts[i]
		}
		c.cur.Store(&next)
	}
	return parts, nil
}

// listWriters gathers the many small parts of a list into fewer writes,
// without a new buffer per request.
var listWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// writeList answers 200 with prefix, the JSON array of parts, and suffix,
// as writeJSON would have written the document: the parts go out as they
// are, with no copy of the whole answer made first.
func writeList(w http.ResponseWriter, prefix string, parts [][]byte, suffix string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := listWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() { bw.Reset(nil); listWriters.Put(bw) }()
	bw.WriteString(prefix)
	bw.WriteByte('[')
	for i, p := range parts {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(p)
	}
	bw.WriteByte(']')
	bw.WriteString(suffix)
	bw.WriteByte('\n')
	_ = bw.Flush() // a client gone meanwhile is no error of ours
}
