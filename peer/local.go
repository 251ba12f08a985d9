package peer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// ownRoute serves, in this process, the requests a node makes to its own
// address under a path prefix.
type ownRoute struct {
	addr, prefix string
	h            http.Handler
}

// ServeOwn makes c (made by NewHTTPClient) hand its requests to addr, the
// node's own API address, under prefix to h in this process, with no
// connection and no TLS. A leader's executor calls the agent of the node
// a failover promotes, which is often its own; through the loopback and
// TLS that call took a third of a failover step. The answers, errors and
// streams are h's, exactly as a remote caller gets them; what is skipped
// is the check that the caller holds a member's certificate, and the
// caller is this node. A nil h ends it: the calls go to the network again,
// and fail there once the node's API is closed, as after a crash.
func ServeOwn(c *http.Client, addr, prefix string, h http.Handler) {
	p, ok := c.Transport.(*transport)
	switch {
	case !ok:
	case h == nil:
		p.own.Store(nil)
	default:
		p.own.Store(&ownRoute{addr: addr, prefix: prefix, h: h})
	}
}

func (o *ownRoute) matches(r *http.Request) bool {
	return o != nil && r.URL.Host == o.addr && strings.HasPrefix(r.URL.Path, o.prefix+"/")
}

// serve runs h on r and answers as soon as h writes its header, streaming
// the body: a shard's data can be larger than memory should hold at once.
func (o *ownRoute) serve(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	req := r.Clone(ctx)
	req.RequestURI = r.URL.RequestURI()
	req.Host = r.URL.Host
	req.RemoteAddr = o.addr
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	if req.Body == nil {
		req.Body = http.NoBody
	}
	pr, pw := io.Pipe()
	w := &ownWriter{header: http.Header{}, body: pw, started: make(chan struct{})}
	// A caller that stops waiting is not left blocked on a handler that
	// neither answers nor ends, as a connection's close would free it.
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	go func() {
		defer func() {
			if v := recover(); v != nil {
				// What net/http's server does with a panic: the caller
				// sees a broken answer, the process goes on.
				pw.CloseWithError(fmt.Errorf("handler of %s panicked: %v", r.URL.Path, v))
				w.start(http.StatusInternalServerError)
				return
			}
			w.start(http.StatusOK)
			pw.Close()
		}()
		o.h.ServeHTTP(w, req)
	}()
	select {
	case <-w.started:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s %s on %s: %w", r.Method, r.URL.Path, o.addr, ctx.Err())
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.sent, Body: &ownBody{PipeReader: pr, ctx: ctx, stop: stop}, ContentLength: -1, Request: r,
	}, nil
}

// ownWriter is the http.ResponseWriter of an in-process request: the
// header goes to the caller at the first write, the body through a pipe.
type ownWriter struct {
	header  http.Header
	body    *io.PipeWriter
	once    sync.Once
	started chan struct{}
	status  int
	sent    http.Header // the header as it was when the answer started
}

func (w *ownWriter) Header() http.Header { return w.header }

func (w *ownWriter) WriteHeader(status int) {
	if status >= 100 && status < 200 {
		return // informational: no answer yet
	}
	w.start(status)
}

func (w *ownWriter) start(status int) {
	w.once.Do(func() {
		w.status, w.sent = status, w.header.Clone()
		close(w.started)
	})
}

func (w *ownWriter) Write(b []byte) (int, error) {
	w.start(http.StatusOK)
	return w.body.Write(b)
}

// Flush is a no-op: every write reaches the caller as it is made.
func (w *ownWriter) Flush() {}

// ownBody ends the watch on the caller's context with the body, and
// tells a caller that gave up so, rather than passing the end of what the
// handler wrote by then off as the whole answer.
type ownBody struct {
	*io.PipeReader
	ctx  context.Context
	stop func() bool
}

func (b *ownBody) Read(p []byte) (int, error) {
	n, err := b.PipeReader.Read(p)
	if err != nil && b.ctx.Err() != nil {
		err = b.ctx.Err()
	}
	return n, err
}

func (b *ownBody) Close() error {
	b.stop()
	return b.PipeReader.Close()
}
