package peer_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"cnm/fsm"
	"cnm/peer"
)

func answer(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader(body))}
}

// TestDecodeError: a node's refusal keeps its status, code and description;
// errors.Is matches its kind, but it never passes for a domain error of the
// caller's own (the executor fails an action at once on those, and must
// wait out a node that is briefly unable to serve).
func TestDecodeError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		kind   *fsm.Error
		code   string
		desc   string
	}{
		{"full disk", 507, `{"error_code":"insufficient_storage","description":"disk full"}`, fsm.ErrInsufficientStorage, "insufficient_storage", "disk full"},
		{"stale term", 409, `{"error_code":"stale_term","description":"term 6 owns it"}`, fsm.ErrStaleTerm, "stale_term", "term 6 owns it"},
		{"revoked", 403, `{"error_code":"certificate_revoked","description":"removed"}`, fsm.ErrCertRevoked, "certificate_revoked", "removed"},
		{"not json", 502, "bad gateway\n", nil, "", "bad gateway"},
		{"empty", 500, "", nil, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := fmt.Errorf("copy: %w", peer.DecodeError(answer(tc.status, tc.body), "127.0.0.2:9443"))
			var re *peer.RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("%v is no *RemoteError", err)
			}
			if re.Status != tc.status || re.Err.Code != tc.code || re.Err.Description != tc.desc || re.Addr != "127.0.0.2:9443" {
				t.Fatalf("decoded %+v (%+v)", re, re.Err)
			}
			var fe *fsm.Error
			if errors.As(err, &fe) {
				t.Fatalf("errors.As found a domain error %v in a remote refusal", fe)
			}
			if tc.kind != nil && (!errors.Is(err, tc.kind) || !peer.IsCode(err, tc.kind)) {
				t.Fatalf("%v does not match kind %s", err, tc.kind.Code)
			}
			if errors.Is(err, fsm.ErrInternal) || peer.IsCode(err, fsm.ErrInternal) {
				t.Fatalf("%v matches a kind it does not have", err)
			}
		})
	}
}
