package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Limits of the session store.
const (
	// DefaultSessionIdle ends a session nobody used for this long.
	DefaultSessionIdle = 30 * time.Minute
	// DefaultSessionMax ends a session this long after login, however busy.
	DefaultSessionMax = 8 * time.Hour
	// DefaultMaxSessions bounds the sessions one node holds; a login beyond it is refused
	// until some expire or log out.
	DefaultMaxSessions = 1024

	// cookieName is the session cookie's name; its value is the session id, never the token.
	cookieName = "bankd_console"
	// secretBytes is the size of a session id and of a CSRF token (256 bits each).
	secretBytes = 32
	// maxCookieLen bounds the session id we look at.
	maxCookieLen = 128
)

var errTooManySessions = errors.New("this node holds too many console sessions; log out elsewhere or wait for idle ones to expire")

// flash is a one-shot message shown on the next page of a session (the outcome of an
// approval, say), so a POST can redirect (and a reload does not post again).
type flash struct {
	// Kind is "ok" or "refused".
	Kind string
	Text string
}

// session is one logged-in browser. token is the API token the operator typed; it stays here,
// on the server, and is sent only to the API, in process.
type session struct {
	key     [sha256.Size]byte
	token   string
	csrf    string
	created time.Time

	// Guarded by sessionStore.mu.
	lastUsed time.Time
	flash    *flash
	ended    bool
	streams  int
}

// sessionStore holds the sessions of one node, known by the SHA-256 of their id: the map never
// holds an id a cookie could be made from.
type sessionStore struct {
	idle, max time.Duration
	limit     int
	now       func() time.Time

	mu    sync.Mutex
	byKey map[[sha256.Size]byte]*session
}

func newSessionStore(idle, max time.Duration, limit int, now func() time.Time) *sessionStore {
	return &sessionStore{idle: idle, max: max, limit: limit, now: now, byKey: map[[sha256.Size]byte]*session{}}
}

// randomSecret returns secretBytes from crypto/rand, URL-safe base64.
func randomSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// create starts a session for token and returns its id (for the cookie).
func (s *sessionStore) create(token string) (string, *session, error) {
	id, err := randomSecret()
	if err != nil {
		return "", nil, err
	}
	csrf, err := randomSecret()
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	sess := &session{key: sha256.Sum256([]byte(id)), token: token, csrf: csrf, created: now, lastUsed: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byKey) >= s.limit {
		s.pruneLocked(now)
	}
	if len(s.byKey) >= s.limit {
		return "", nil, errTooManySessions
	}
	s.byKey[sess.key] = sess
	return id, sess, nil
}

// lookup returns the live session of id and marks it used; an expired one is deleted.
func (s *sessionStore) lookup(id string) (*session, bool) {
	if id == "" || len(id) > maxCookieLen {
		return nil, false
	}
	key := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byKey[key]
	if !ok {
		return nil, false
	}
	if s.expiredLocked(sess, now) {
		s.endLocked(sess)
		return nil, false
	}
	sess.lastUsed = now
	return sess, true
}

// alive reports whether sess has neither expired nor ended, without marking it used (live
// streams ask this while they run).
func (s *sessionStore) alive(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !sess.ended && !s.expiredLocked(sess, s.now())
}

// end logs sess out.
func (s *sessionStore) end(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(sess)
}

func (s *sessionStore) setFlash(sess *session, f flash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.flash = &f
}

// takeFlash returns the session's flash once.
func (s *sessionStore) takeFlash(sess *session) *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := sess.flash
	sess.flash = nil
	return f
}

// addStream counts a live stream of sess, refusing one beyond maxLiveStreamsPerSession.
func (s *sessionStore) addStream(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.streams >= maxLiveStreamsPerSession {
		return false
	}
	sess.streams++
	return true
}

func (s *sessionStore) dropStream(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.streams--
}

func (s *sessionStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}

func (s *sessionStore) expiredLocked(sess *session, now time.Time) bool {
	return now.Sub(sess.lastUsed) >= s.idle || now.Sub(sess.created) >= s.max
}

func (s *sessionStore) endLocked(sess *session) {
	sess.ended = true
	delete(s.byKey, sess.key)
}

func (s *sessionStore) pruneLocked(now time.Time) {
	for _, sess := range s.byKey {
		if s.expiredLocked(sess, now) {
			s.endLocked(sess)
		}
	}
}

// sessionCookie is the cookie that carries a session id: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page sends it), Secure on TLS, and only for /ui.
func sessionCookie(r *http.Request, id string) *http.Cookie {
	return &http.Cookie{
		Name: cookieName, Value: id, Path: "/ui",
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	}
}

// expiredCookie deletes the session cookie in the browser.
func expiredCookie(r *http.Request) *http.Cookie {
	c := sessionCookie(r, "")
	c.MaxAge = -1
	return c
}

// validCSRF compares the form's CSRF token with the session's in constant time.
func validCSRF(sess *session, got string) bool {
	if got == "" || len(got) > maxCookieLen {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

var (
	errCrossSite   = errors.New("the request came from another site (Sec-Fetch-Site)")
	errCrossOrigin = errors.New("the request came from another origin (Origin)")
)

// checkSameOrigin refuses a state-changing request that a browser says came from elsewhere:
// Sec-Fetch-Site other than same-origin, or an Origin other than the console's own. Under
// Referrer-Policy: no-referrer a browser sends "Origin: null" even for the console's own forms,
// so null passes only with Sec-Fetch-Site: same-origin (which no page can forge). Clients that
// send neither header (curl) still need the CSRF token.
func checkSameOrigin(r *http.Request) error {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" {
		return errCrossSite
	}
	switch origin := r.Header.Get("Origin"); {
	case origin == "":
	case origin == "null":
		if site != "same-origin" {
			return errCrossOrigin
		}
	case !strings.EqualFold(origin, selfOrigin(r)):
		return errCrossOrigin
	}
	return nil
}

// selfOrigin is the origin the browser sees the console at.
func selfOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}
