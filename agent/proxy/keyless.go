package proxy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// handleKeyless answers the commands that name no key; handled is false
// for every other command.
func (s *session) handleKeyless(name string, args [][]byte) (handled, quit bool) {
	switch name {
	case "ping":
		s.ping(args)
	case "echo":
		if len(args) != 2 {
			s.wr.WriteError("ERR wrong number of arguments for 'echo' command")
		} else {
			s.wr.WriteBulk(args[1])
		}
	case "select":
		s.selectDB(args)
	case "quit":
		s.wr.WriteString("OK")
		return true, true
	case "command":
		// redis-cli asks for COMMAND DOCS at connect only for hints; an
		// empty answer is valid and keeps the proxy from claiming commands
		// it refuses.
		s.wr.WriteArray(0)
	case "hello":
		s.hello(args)
	case "client":
		s.client(args)
	case "auth":
		s.wr.WriteError("ERR AUTH is not supported: the cnm proxy has no password configured")
	case "dbsize":
		s.dbsize()
	case "info":
		s.info()
	case "wait":
		s.wait(args)
	default:
		return false, false
	}
	return true, false
}

func (s *session) ping(args [][]byte) {
	switch len(args) {
	case 1:
		s.wr.WriteString("PONG")
	case 2:
		s.wr.WriteBulk(args[1])
	default:
		s.wr.WriteError("ERR wrong number of arguments for 'ping' command")
	}
}

func (s *session) selectDB(args [][]byte) {
	switch {
	case len(args) != 2:
		s.wr.WriteError("ERR wrong number of arguments for 'select' command")
	case string(args[1]) == "0":
		s.wr.WriteString("OK")
	default:
		// Shards are sharded by key, not by database number; only db 0 exists.
		s.wr.WriteError("ERR DB index is out of range: the cnm proxy serves database 0 only")
	}
}

// hello answers HELLO 2 (and HELLO without a version) and refuses
// HELLO 3, which clients such as go-redis take as "speak RESP2": relaying
// raw master replies is only correct when both sides speak the same
// protocol, and upstream connections speak RESP2.
func (s *session) hello(args [][]byte) {
	if len(args) > 1 && string(args[1]) != "2" {
		s.wr.WriteError("NOPROTO the cnm proxy speaks RESP2 only")
		return
	}
	for i := 2; i < len(args); i++ {
		switch strings.ToLower(string(args[i])) {
		case "setname":
			if i+1 >= len(args) {
				s.wr.WriteError("ERR syntax error in HELLO option 'setname'")
				return
			}
			s.name = string(args[i+1])
			i++
		case "auth":
			s.wr.WriteError("ERR AUTH is not supported: the cnm proxy has no password configured")
			return
		default:
			s.writeErr(replyError(fmt.Sprintf("ERR syntax error in HELLO option '%s'", args[i])))
			return
		}
	}
	s.wr.WriteArray(14)
	for _, kv := range [][2]string{{"server", "cnm-proxy"}, {"version", "1.0.0"}} {
		s.wr.WriteBulkString(kv[0])
		s.wr.WriteBulkString(kv[1])
	}
	s.wr.WriteBulkString("proto")
	s.wr.WriteInt(2)
	s.wr.WriteBulkString("id")
	s.wr.WriteInt64(s.id)
	for _, kv := range [][2]string{{"mode", "standalone"}, {"role", "master"}} {
		s.wr.WriteBulkString(kv[0])
		s.wr.WriteBulkString(kv[1])
	}
	s.wr.WriteBulkString("modules")
	s.wr.WriteArray(0)
}

func (s *session) client(args [][]byte) {
	if len(args) < 2 {
		s.wr.WriteError("ERR wrong number of arguments for 'client' command")
		return
	}
	switch sub := strings.ToLower(string(args[1])); {
	case sub == "setname" && len(args) == 3:
		if bytes.ContainsAny(args[2], " \n") {
			s.wr.WriteError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		s.name = string(args[2])
		s.wr.WriteString("OK")
	case sub == "getname" && len(args) == 2:
		if s.name == "" {
			s.wr.WriteNull()
		} else {
			s.wr.WriteBulkString(s.name)
		}
	case sub == "setinfo" && len(args) == 4:
		// Library name and version are only informational to Redis too.
		s.wr.WriteString("OK")
	case sub == "id" && len(args) == 2:
		s.wr.WriteInt64(s.id)
	default:
		s.writeErr(replyError(fmt.Sprintf("ERR CLIENT %s is not supported by the cnm proxy", sub)))
	}
}

// intReply reads an integer reply, turning an error reply into an error
// that is relayed as it is.
func intReply(raw []byte) (int64, error) {
	if len(raw) < 3 {
		return 0, errProtocol
	}
	body := string(raw[1 : len(raw)-2])
	switch raw[0] {
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("integer reply %q: %w", body, errProtocol)
		}
		return n, nil
	case '-':
		return 0, replyError(body)
	}
	return 0, fmt.Errorf("want an integer reply, got %q: %w", raw[0], errProtocol)
}

// bulkReply reads a bulk string reply the same way.
func bulkReply(raw []byte) ([]byte, error) {
	if len(raw) > 2 && raw[0] == '-' {
		return nil, replyError(raw[1 : len(raw)-2])
	}
	if len(raw) < 3 || raw[0] != '$' {
		return nil, fmt.Errorf("want a bulk reply: %w", errProtocol)
	}
	_, body, _ := bytes.Cut(raw, []byte("\r\n"))
	return bytes.TrimSuffix(body, []byte("\r\n")), nil
}
