package clustertest_test

import (
	"crypto/tls"
	"encoding/json"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func insecure() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // test client
