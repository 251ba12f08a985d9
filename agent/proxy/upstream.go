package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// upstream is one connection to one master, owned by one client session.
// Replies are relayed as raw RESP bytes rather than decoded by a client
// library, so the client sees the master's reply types (status vs bulk,
// error codes) exactly as the master sent them.
type upstream struct {
	addr string
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

// errDial marks a failure to reach a master: the command never left the
// proxy, so it is safe to hold and retry it.
var errDial = errors.New("master unreachable")

func dialUpstream(ctx context.Context, addr string, timeout time.Duration) (*upstream, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDial, err)
	}
	return &upstream{addr: addr, nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}, nil
}

func (u *upstream) close() { _ = u.nc.Close() }

// do sends one command and returns its raw reply. Cancelling ctx closes the
// connection, which is the only way to interrupt a blocked read; the
// session then drops this upstream.
func (u *upstream) do(ctx context.Context, args [][]byte) ([]byte, error) {
	stop := context.AfterFunc(ctx, u.close)
	defer stop()
	writeCommand(u.bw, args)
	if err := u.bw.Flush(); err != nil {
		return nil, fmt.Errorf("send to %s: %w", u.addr, err)
	}
	reply, err := readReply(u.br, nil)
	if err != nil {
		return nil, fmt.Errorf("reply from %s: %w", u.addr, err)
	}
	return reply, nil
}

func writeCommand(w *bufio.Writer, args [][]byte) {
	w.WriteByte('*')
	w.WriteString(strconv.Itoa(len(args)))
	w.WriteString("\r\n")
	for _, a := range args {
		w.WriteByte('$')
		w.WriteString(strconv.Itoa(len(a)))
		w.WriteString("\r\n")
		w.Write(a)
		w.WriteString("\r\n")
	}
}

var (
	errProtocol = errors.New("bad RESP from master")
	errStale    = errors.New("master closed the idle connection")
)

// readReply appends one complete reply to buf. It knows the RESP2 types a
// master sends to a RESP2 connection (the proxy never upgrades upstream
// connections with HELLO 3).
func readReply(br *bufio.Reader, buf []byte) ([]byte, error) {
	lineStart := len(buf)
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if err == nil {
			break
		}
		// Status and error lines may outgrow the read buffer; keep going.
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
	line := buf[lineStart:]
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errProtocol
	}
	switch line[0] {
	case '+', '-', ':':
		return buf, nil
	case '$':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return nil, errProtocol
		}
		if n < 0 {
			return buf, nil
		}
		start := len(buf)
		buf = append(buf, make([]byte, n+2)...)
		if _, err := io.ReadFull(br, buf[start:]); err != nil {
			return nil, err
		}
		if !bytes.HasSuffix(buf, []byte("\r\n")) {
			return nil, errProtocol
		}
		return buf, nil
	case '*':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return nil, errProtocol
		}
		for range max(n, 0) {
			if buf, err = readReply(br, buf); err != nil {
				return nil, err
			}
		}
		return buf, nil
	}
	return nil, errProtocol
}
