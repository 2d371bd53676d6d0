package protocol

// MaxIDLen is the longest user, conversation, app or client message id.
const MaxIDLen = 128

// ValidID reports whether s is a usable id: 1 to MaxIDLen bytes of ASCII
// letters, digits and "_-.:@". The set is small on purpose: ids travel in
// JWT claims, URL paths and log lines, and must mean the same in all of them.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '-', c == '.', c == ':', c == '@':
		default:
			return false
		}
	}
	return true
}
