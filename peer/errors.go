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
// with the fsm error kind of its code, but errors.As finds no *fsm.Error
// in it: a refusal of another node is no domain error of this one's
// (an executor fails an action at once on those, and must wait out a
// node that is briefly unable to serve).
type RemoteError struct {
	Addr   string
	Status int
	Err    *fsm.Error
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s answered %d %s", e.Addr, e.Status, e.Err)
}

// Is makes errors.Is(err, fsm.ErrStaleTerm) hold for a stale_term answer.
func (e *RemoteError) Is(target error) bool {
	k, ok := target.(*fsm.Error)
	return ok && k != nil && e.Err.Code != "" && k.Code == e.Err.Code
}

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
