package httpapi

// SetPasswordCheck replaces the password check of s, so that tests can
// count how many a request costs.
func SetPasswordCheck(s *Server, check func(hash, password []byte) error) { s.checkPassword = check }
