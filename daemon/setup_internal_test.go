package daemon

import (
	"errors"
	"net"
	"testing"
	"time"
)

// The socket passes from owner to owner; a connection made while no one
// owns it waits for the next owner; closing the socket ends every Accept.
func TestSharedListener_HandsConnectionsToTheCurrentOwner(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newSharedListener(raw)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func(q *connQueue) chan error {
		ch := make(chan error, 1)
		go func() {
			c, err := q.Accept()
			if err == nil {
				c.Close()
			}
			ch <- err
		}()
		return ch
	}
	wait := func(ch chan error, what string) error {
		t.Helper()
		select {
		case err := <-ch:
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Accept did not return", what)
			return nil
		}
	}

	first := s.take()
	dial()
	if err := wait(accept(first), "first owner"); err != nil {
		t.Fatalf("first owner: %v", err)
	}

	second := s.take()
	firstAgain := accept(first)
	dial()
	if err := wait(accept(second), "second owner"); err != nil {
		t.Fatalf("second owner: %v", err)
	}
	first.Close()
	if err := wait(firstAgain, "closed first owner"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a replaced, closed owner accepted: %v", err)
	}

	// No owner: the connection waits for the next one.
	second.Close()
	dial()
	third := s.take()
	if err := wait(accept(third), "third owner"); err != nil {
		t.Fatalf("third owner: %v", err)
	}

	s.Close()
	if err := wait(accept(third), "after close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after the socket closed: %v", err)
	}
}
