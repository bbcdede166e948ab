// Package ascii holds the byte classes that the hand-written scanners (of
// JSON bodies, keys, labels and tokens) share, so that each class is
// written, and read, once.
package ascii

// IsAlnum reports whether c is an ASCII letter or digit.
func IsAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// IsSpace reports whether c is white space as JSON defines it (RFC 8259,
// section 2): space, tab, line feed or carriage return. Unlike C's
// isspace, vertical tab and form feed are not.
func IsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}
