package httpapi

import "testing"

func TestMemberURL_NormalisesAddresses(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"10.0.0.1", "https://10.0.0.1:9443", true},
		{"10.0.0.1:9555", "https://10.0.0.1:9555", true},
		{"https://node-1.example:9443", "https://node-1.example:9443", true},
		{"https://node-1.example:9443/", "https://node-1.example:9443", true},
		{"[::1]:9443", "https://[::1]:9443", true},
		{"http://10.0.0.1:9443", "", false},
		{"https://10.0.0.1:9443/v1/nodes", "", false},
		{"https://user:pw@10.0.0.1:9443", "", false},
		{"10.0.0.1:0", "", false},
		{"10.0.0.1:99999", "", false},
		{":9443", "", false},
		{"", "", false},
		{"a b", "", false},
	}
	for _, tc := range tests {
		got, err := memberURL(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("memberURL(%q) = %q, %v; want %q (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
