package peer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"cnm/fsm"
)

// RemoteError is a node's answer other than 200: its status and, when the
// body was a cnm error, its code and description. errors.Is matches it
// with the fsm error kind of its code.
type RemoteError struct {
	Addr   string
	Status int
	Err    *fsm.Error
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s answered %d %s", e.Addr, e.Status, e.Err)
}

// Unwrap gives the remote node's error, so that errors.Is(err,
// fsm.ErrStaleTerm) holds for a stale_term answer.
func (e *RemoteError) Unwrap() error { return e.Err }

// DecodeError is the one reading of a node's error answer; it consumes
// resp's body but does not close it.
func DecodeError(resp *http.Response, addr string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fe := &fsm.Error{}
	if json.Unmarshal(b, fe) != nil || fe.Code == "" {
		fe = &fsm.Error{Description: strings.TrimSpace(string(b))}
	}
	return &RemoteError{Addr: addr, Status: resp.StatusCode, Err: fe}
}

// IsCode reports whether err is a remote node's answer of kind k.
func IsCode(err error, k *fsm.Error) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Err.Code == k.Code
}
