package descriptor

import (
	"fmt"
	"strings"
)

// The checksum algorithm is specified in BIP 380 ("Checksum" section); this is a
// direct transcription of the Python reference in that document.

// inputCharset is the character set a descriptor may use. Each character's
// position selects its symbol (position & 31) and group (position >> 5).
const inputCharset = "0123456789()[],'/*abcdefgh@:$%{}" +
	"IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~" +
	"ijklmnopqrstuvwxyzABCDEFGH`#\"\\ "

// checksumCharset is the bech32 character set the eight checksum symbols use.
const checksumCharset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

// ChecksumLength is the number of characters after the '#'.
const ChecksumLength = 8

var generator = [5]uint64{0xf5dee51989, 0xa9fdca3312, 0x1bab10e32d, 0x3706b1677a, 0x644d626ffd}

func polymod(chk uint64, value uint64) uint64 {
	top := chk >> 35
	chk = (chk&0x7ffffffff)<<5 ^ value
	for i := range 5 {
		if (top>>i)&1 == 1 {
			chk ^= generator[i]
		}
	}
	return chk
}

// checksumOf returns the checksum of payload, or an error naming the first
// character outside the descriptor character set.
func checksumOf(payload string) (string, error) {
	chk := uint64(1)
	cls, clsCount := uint64(0), 0
	for i := 0; i < len(payload); i++ {
		pos := strings.IndexByte(inputCharset, payload[i])
		if pos < 0 {
			return "", &Error{Kind: ErrSyntax, Pos: i, Token: tokenAt(payload, i),
				Msg: "character is not in the descriptor character set"}
		}
		chk = polymod(chk, uint64(pos&31))
		cls = cls*3 + uint64(pos>>5)
		clsCount++
		if clsCount == 3 {
			chk = polymod(chk, cls)
			cls, clsCount = 0, 0
		}
	}
	if clsCount > 0 {
		chk = polymod(chk, cls)
	}
	for range ChecksumLength {
		chk = polymod(chk, 0)
	}
	chk ^= 1
	var out [ChecksumLength]byte
	for i := range ChecksumLength {
		out[i] = checksumCharset[(chk>>(5*(7-i)))&31]
	}
	return string(out[:]), nil
}

// tokenAt returns the (possibly multi-byte) character at byte offset i, for
// error messages.
func tokenAt(s string, i int) string {
	for _, r := range s[i:] {
		return string(r)
	}
	return ""
}

// Checksum returns the eight-character BIP 380 checksum of a descriptor that
// has none. A descriptor that already carries "#checksum" is refused: strip it
// first (or use [AddChecksum], which replaces a correct one).
func Checksum(desc string) (string, error) {
	if i := strings.IndexByte(desc, '#'); i >= 0 {
		return "", &Error{Kind: ErrSyntax, Pos: i, Token: "#",
			Msg: "descriptor already has a checksum; Checksum takes the part before '#'"}
	}
	return checksumOf(desc)
}

// AddChecksum returns desc followed by '#' and its checksum. If desc already
// ends in a checksum, that checksum is verified and desc is returned unchanged.
func AddChecksum(desc string) (string, error) {
	payload, sum, err := SplitChecksum(desc)
	if err != nil {
		return "", err
	}
	if sum != "" {
		return desc, nil
	}
	c, err := checksumOf(payload)
	if err != nil {
		return "", err
	}
	return payload + "#" + c, nil
}

// SplitChecksum separates a descriptor into its payload and checksum and
// verifies the checksum when there is one. A descriptor without '#' is returned
// with an empty checksum. The payload's characters are checked against the
// descriptor character set either way.
//
// Errors are *Error values with Kind ErrChecksum (wrong, missing, too short or
// too long checksum; the message names the expected and the given checksum)
// or ErrSyntax (a character outside the character set).
func SplitChecksum(desc string) (payload, checksum string, err error) {
	i := strings.IndexByte(desc, '#')
	if i < 0 {
		if _, err := checksumOf(desc); err != nil {
			return "", "", err
		}
		return desc, "", nil
	}
	payload, checksum = desc[:i], desc[i+1:]
	want, err := checksumOf(payload)
	if err != nil {
		return "", "", err
	}
	switch {
	case strings.IndexByte(checksum, '#') >= 0:
		return "", "", &Error{Kind: ErrChecksum, Pos: i + 1 + strings.IndexByte(checksum, '#'), Token: "#",
			Msg: "more than one '#'"}
	case checksum == "":
		return "", "", &Error{Kind: ErrChecksum, Pos: i, Token: "#",
			Msg: fmt.Sprintf("missing checksum after '#' (expected %s)", want)}
	case len(checksum) != ChecksumLength:
		return "", "", &Error{Kind: ErrChecksum, Pos: i + 1, Token: checksum,
			Msg: fmt.Sprintf("checksum must be %d characters, got %d (expected %s)", ChecksumLength, len(checksum), want)}
	case checksum != want:
		return "", "", &Error{Kind: ErrChecksum, Pos: i + 1, Token: checksum,
			Msg: fmt.Sprintf("checksum mismatch: expected %s, got %s", want, checksum)}
	}
	return payload, checksum, nil
}
