package httpapi

import (
	"bytes"
	"net/http"
	"testing"

	"cnm/control"
	"cnm/fsm"
)

// FuzzDecodeBody: any body either decodes or is a 400 with a JSON error;
// decoding never panics.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{"", "{}", "[]", "null", `{"email":"a@b.c","password":"x","role":"admin"}`,
		`{"name":1}`, `{"evict_dbs":["1",2]}`, `{"a":{"b":[1,2,{"c":null}]}}`, "{} {}", `{"x":"\ud800"}`, "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		targets := []any{&userBody{}, &bdbBody{}, &control.ActionParams{}, &struct{}{}}
		for _, dst := range targets {
			r, _ := http.NewRequest("POST", "/", bytes.NewReader(body))
			err := decodeBody(r, dst)
			if err == nil {
				continue
			}
			ae, ok := err.(*fsm.Error)
			if !ok || ae.Status() != http.StatusBadRequest || ae.Code == "" || ae.Description == "" {
				t.Fatalf("decode %q into %T: %#v", body, dst, err)
			}
		}
	})
}
