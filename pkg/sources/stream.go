package sources

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// StreamOptions shape StreamItems.
type StreamOptions struct {
	// MaxItemBytes bounds what is kept of one item. A member whose value would take the item past
	// it is cut: skipped unread, its name reported, so that one oversize item costs its large
	// members and not the body it came in.
	MaxItemBytes int
	// ListKey names the member of a top-level object that holds the items as an array (an audit
	// EventList's "items"); a top-level object without it is an item itself. Empty: every
	// top-level object is an item.
	ListKey string
}

// DefaultMaxItemBytes is StreamOptions.MaxItemBytes when it is not set.
const DefaultMaxItemBytes = 256 << 10

// maxNesting is how deep arrays and objects may nest, as deep as encoding/json allows.
const maxNesting = 10000

// maxKeyBytes bounds a member name: no format this reads has longer ones.
const maxKeyBytes = 4096

// StreamItems reads a webhook body from r — one JSON object, an array of objects, objects one
// after another (JSON lines), or objects holding their items under opts.ListKey — and calls each
// for every item in order, with the item's members that fit opts.MaxItemBytes and the names of
// those cut. What it keeps of a body is one item at a time, so a body's size costs time, not
// memory. raw is valid only during the call. An error of r is returned wrapped.
func StreamItems(r io.Reader, opts StreamOptions, each func(raw json.RawMessage, cut []string) error) error {
	if opts.MaxItemBytes <= 0 {
		opts.MaxItemBytes = DefaultMaxItemBytes
	}
	s := &scanner{r: bufio.NewReaderSize(r, 32<<10), opts: opts, each: each}
	for values := 0; ; values++ {
		c, err := s.skipSpace()
		if errors.Is(err, io.EOF) {
			if values == 0 {
				return errors.New("empty body")
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch c {
		case '[':
			err = s.array()
		case '{':
			err = s.topObject()
		default:
			err = fmt.Errorf("value %d is not a JSON object or array", values)
		}
		if err != nil {
			return err
		}
	}
}

// scanner splits a JSON byte stream into items. It checks the structure of what it skips
// (strings closed, brackets matched); what it keeps is decoded, and so checked, by the caller.
type scanner struct {
	r     *bufio.Reader
	opts  StreamOptions
	each  func(raw json.RawMessage, cut []string) error
	items int
	buf   []byte // the item being read; reused
	top   []byte // a top-level object being read, which may be a list of items
}

// readErr wraps a reader's error; the end of the stream inside a value is an unexpected one.
func readErr(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading body: %w", err)
}

// skipSpace returns the next byte that is not JSON white space.
func (s *scanner) skipSpace() (byte, error) {
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, readErr(err)
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c, nil
		}
	}
}

// expect reads the next byte that is not white space, which must be one of want.
func (s *scanner) expect(want string) (byte, error) {
	c, err := s.skipSpace()
	if errors.Is(err, io.EOF) {
		return 0, readErr(err)
	}
	if err != nil {
		return 0, err
	}
	for i := range len(want) {
		if c == want[i] {
			return c, nil
		}
	}
	return 0, fmt.Errorf("invalid JSON: %q where one of %q belongs", c, want)
}

// array reads a top-level array's elements (its '[' read), each an item.
func (s *scanner) array() error {
	for i := 0; ; i++ {
		c, err := s.skipSpace()
		if errors.Is(err, io.EOF) {
			return readErr(err)
		}
		if err != nil {
			return err
		}
		if c == ']' && i == 0 {
			return nil
		}
		if c != '{' {
			return fmt.Errorf("item %d is not a JSON object", s.items)
		}
		if err := s.item(); err != nil {
			return err
		}
		if c, err = s.expect(",]"); err != nil {
			return err
		} else if c == ']' {
			return nil
		}
	}
}

// item reads one object (its '{' read) and hands it on.
func (s *scanner) item() error {
	if s.items >= MaxItems {
		return fmt.Errorf("more than %d items in one body", MaxItems)
	}
	cut, err := s.object(&s.buf, nil)
	if err != nil {
		return fmt.Errorf("item %d: %w", s.items, err)
	}
	s.items++
	if err := s.each(s.buf, cut); err != nil {
		return fmt.Errorf("item %d: %w", s.items-1, err)
	}
	return nil
}

// topObject reads a top-level object (its '{' read): a list when it holds opts.ListKey as an
// array, whose items are handed on as they are read; an item otherwise.
func (s *scanner) topObject() error {
	list := false
	cut, err := s.object(&s.top, func(key string) (bool, error) {
		if s.opts.ListKey == "" || key != s.opts.ListKey {
			return false, nil
		}
		c, err := s.peek()
		if err != nil {
			return false, err
		}
		list = true
		if c == '[' {
			_, _ = s.r.ReadByte()
			return true, s.array()
		}
		// Go encodes a list of no items as null.
		if v, _, err := s.value(nil, 4); err != nil || string(v) != "null" {
			return false, fmt.Errorf("%s is not an array", key)
		}
		return true, nil
	})
	if err != nil || list {
		return err
	}
	if s.items >= MaxItems {
		return fmt.Errorf("more than %d items in one body", MaxItems)
	}
	s.items++
	return s.each(s.top, cut)
}

// object reads an object's members (its '{' read) into *dst, each member's value kept while the
// object stays within opts.MaxItemBytes and cut otherwise. take may consume a member's value
// itself, saying so.
func (s *scanner) object(dst *[]byte, take func(key string) (bool, error)) ([]string, error) {
	limit := s.opts.MaxItemBytes - 1 // room for the closing brace
	buf := append((*dst)[:0], '{')
	defer func() { *dst = buf }()
	var cut []string
	for i := 0; ; i++ {
		c, err := s.expect(`"}`)
		if err != nil {
			return nil, err
		}
		if c == '}' && i == 0 {
			break
		}
		if c != '"' {
			return nil, errors.New(`invalid JSON: '}' after ','`)
		}
		mark := len(buf)
		buf = append(buf, '"')
		if buf, err = s.rest(buf, mark+maxKeyBytes); err != nil {
			return nil, err
		}
		if len(buf)-mark > maxKeyBytes {
			return nil, fmt.Errorf("a member name over %d bytes", maxKeyBytes)
		}
		// A member's name is decoded only where it is needed: to be offered to take, or named.
		keyRaw := buf[mark:]
		name := func() string {
			var key string
			if json.Unmarshal(keyRaw, &key) != nil {
				return string(keyRaw)
			}
			return key
		}
		if _, err := s.expect(":"); err != nil {
			return nil, err
		}
		if take != nil {
			took, err := take(name())
			if err != nil {
				return nil, err
			}
			if took {
				buf = buf[:mark]
				if c, err = s.expect(",}"); err != nil || c == '}' {
					return cut, err
				}
				continue
			}
		}
		buf = append(buf, ':')
		fits := false
		buf, fits, err = s.value(buf, limit)
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", keyRaw, err)
		}
		if !fits {
			cut = append(cut, name())
			buf = buf[:mark]
		} else {
			buf = append(buf, ',')
		}
		if c, err = s.expect(",}"); err != nil {
			return nil, err
		} else if c == '}' {
			break
		}
	}
	if n := len(buf); buf[n-1] == ',' {
		buf = buf[:n-1]
	}
	buf = append(buf, '}')
	return cut, nil
}

// value reads one JSON value, appended to buf while buf stays within limit. When it does not fit,
// buf is returned as it was and fits is false; the value is read to its end all the same.
func (s *scanner) value(buf []byte, limit int) (_ []byte, fits bool, err error) {
	mark := len(buf)
	c, err := s.skipSpace()
	if errors.Is(err, io.EOF) {
		return buf, false, readErr(err)
	}
	if err != nil {
		return buf, false, err
	}
	buf = keep(buf, c, limit)
	switch c {
	case '"':
		buf, err = s.rest(buf, limit)
	case '{', '[':
		buf, err = s.nested(buf, c, limit)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 't', 'f', 'n':
		buf, err = s.scalar(buf, limit)
	default:
		err = fmt.Errorf("invalid JSON: %q where a value belongs", c)
	}
	if err != nil {
		return buf[:mark], false, err
	}
	if len(buf) > limit {
		return buf[:mark], false, nil
	}
	return buf, true, nil
}

// peek returns the next byte that is not white space, leaving it unread.
func (s *scanner) peek() (byte, error) {
	c, err := s.skipSpace()
	if errors.Is(err, io.EOF) {
		return 0, readErr(err)
	}
	if err != nil {
		return 0, err
	}
	return c, s.r.UnreadByte()
}

// keep appends c to buf unless buf is past limit already: a value that will not fit grows buf
// by one byte past it at most, and its caller drops it.
func keep(buf []byte, c byte, limit int) []byte {
	if len(buf) <= limit {
		buf = append(buf, c)
	}
	return buf
}

// rest reads the rest of a string whose opening quote is read, up to its closing quote.
func (s *scanner) rest(buf []byte, limit int) ([]byte, error) {
	escaped := false
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return buf, readErr(err)
		}
		buf = keep(buf, c, limit)
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			return buf, nil
		case c < 0x20:
			return buf, errors.New("invalid JSON: a control character in a string")
		}
	}
}

// nested reads the rest of an object or array whose opening bracket is read.
func (s *scanner) nested(buf []byte, open byte, limit int) ([]byte, error) {
	closers := []byte{closer(open)}
	for len(closers) > 0 {
		c, err := s.r.ReadByte()
		if err != nil {
			return buf, readErr(err)
		}
		buf = keep(buf, c, limit)
		switch c {
		case '"':
			if buf, err = s.rest(buf, limit); err != nil {
				return buf, err
			}
		case '{', '[':
			if len(closers) >= maxNesting {
				return buf, fmt.Errorf("invalid JSON: nested more than %d deep", maxNesting)
			}
			closers = append(closers, closer(c))
		case '}', ']':
			if c != closers[len(closers)-1] {
				return buf, fmt.Errorf("invalid JSON: %q where %q belongs", c, closers[len(closers)-1])
			}
			closers = closers[:len(closers)-1]
		}
	}
	return buf, nil
}

func closer(open byte) byte {
	if open == '{' {
		return '}'
	}
	return ']'
}

// scalar reads the rest of a number or literal, up to the byte that ends it (left unread).
func (s *scanner) scalar(buf []byte, limit int) ([]byte, error) {
	for {
		c, err := s.r.ReadByte()
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, readErr(err)
		}
		switch c {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return buf, s.r.UnreadByte()
		case '"', '{', '[', ':':
			return buf, fmt.Errorf("invalid JSON: %q after a number or literal", c)
		}
		buf = keep(buf, c, limit)
	}
}
