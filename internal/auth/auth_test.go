package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// The service and its store must leave no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = []byte("0123456789abcdef0123456789abcdef")

const (
	adminPassword = "Admin-pass1"
	userPassword  = "User-pass12"
)

// clock is the service's injected time; tokens are issued and judged by it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

type revocation struct {
	userID int64
	jti    string
}

// fixture is a service over a real SQLite store in a temporary directory.
type fixture struct {
	svc   *Service
	st    *sqlite.Store
	clock *clock

	mu      sync.Mutex
	revokes []revocation
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })

	// JWT dates have whole-second precision; a whole-second clock keeps the
	// arithmetic below exact.
	f := &fixture{st: st, clock: &clock{t: time.Now().Truncate(time.Second)}}
	f.svc = f.newService(t)
	return f
}

// newService builds a service over the fixture's store, as a restart would.
func (f *fixture) newService(t *testing.T) *Service {
	t.Helper()
	svc, err := New(context.Background(), Config{Secret: testSecret, BcryptCost: bcrypt.MinCost}, f.st)
	if err != nil {
		t.Fatal(err)
	}
	svc.now = f.clock.Now
	svc.OnRevoke(func(userID int64, jti string) {
		f.mu.Lock()
		f.revokes = append(f.revokes, revocation{userID: userID, jti: jti})
		f.mu.Unlock()
	})
	return svc
}

func (f *fixture) revocations() []revocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]revocation(nil), f.revokes...)
}

func (f *fixture) setup(t *testing.T) (store.User, Tokens) {
	t.Helper()
	u, tok, err := f.svc.Setup(context.Background(), NewUser{
		Username: "admin",
		Email:    "admin@example.org",
		Password: adminPassword,
	})
	if err != nil {
		t.Fatal(err)
	}
	return u, tok
}

func (f *fixture) createUser(t *testing.T, name, role string) store.User {
	t.Helper()
	u, err := f.svc.CreateUser(context.Background(), NewUser{
		Username: name,
		Email:    name + "@example.org",
		FullName: "User " + name,
		Password: userPassword,
		Role:     role,
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *fixture) login(t *testing.T, name, password string) Tokens {
	t.Helper()
	_, tok, err := f.svc.Login(context.Background(), name, password, false)
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return tok
}

// claimsOf reads a token's claims without verifying it.
func claimsOf(t *testing.T, token string) *Claims {
	t.Helper()
	var c Claims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewRefusesShortSecret(t *testing.T) {
	_, err := New(context.Background(), Config{Secret: testSecret[:31]}, nil)
	if err == nil {
		t.Fatal("a 31-byte secret was accepted")
	}
}

func TestTokenLifetimes(t *testing.T) {
	f := newFixture(t)
	f.setup(t)

	tests := []struct {
		name       string
		remember   bool
		wantAccess time.Duration
	}{
		{name: "default", remember: false, wantAccess: 30 * time.Minute},
		{name: "remember me", remember: true, wantAccess: 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, tok, err := f.svc.Login(context.Background(), "admin", adminPassword, tt.remember)
			if err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != "bearer" || tok.ExpiresIn != int64(tt.wantAccess/time.Second) {
				t.Fatalf("token type %q, expires_in %d; want bearer, %d", tok.TokenType, tok.ExpiresIn,
					int64(tt.wantAccess/time.Second))
			}

			access := claimsOf(t, tok.AccessToken)
			if got := access.ExpiresAt.Sub(access.IssuedAt.Time); got != tt.wantAccess {
				t.Fatalf("access token lives %v, want %v", got, tt.wantAccess)
			}
			refresh := claimsOf(t, tok.RefreshToken)
			if got := refresh.ExpiresAt.Sub(refresh.IssuedAt.Time); got != 7*24*time.Hour {
				t.Fatalf("refresh token lives %v, want 7 days", got)
			}
			if access.Type != "access" || refresh.Type != "refresh" || access.Role != RoleAdmin {
				t.Fatalf("claims access %+v refresh %+v", access, refresh)
			}
			if access.ID == "" || refresh.ID == "" || access.ID == refresh.ID {
				t.Fatalf("token ids %q and %q must be set and distinct", access.ID, refresh.ID)
			}
		})
	}
}

func TestPasswordPolicy(t *testing.T) {
	tests := []struct {
		name  string
		pw    string
		unmet []string
	}{
		{name: "acceptable", pw: "Passw0rd", unmet: nil},
		{name: "too short", pw: "Pa55", unmet: []string{"at least 8 bytes"}},
		{name: "too long for bcrypt", pw: "Aa1" + strings.Repeat("x", 70), unmet: []string{"at most 72 bytes"}},
		{name: "no upper case", pw: "passw0rd", unmet: []string{"an upper-case letter"}},
		{name: "no lower case", pw: "PASSW0RD", unmet: []string{"a lower-case letter"}},
		{name: "no digit", pw: "Password", unmet: []string{"a digit"}},
		{
			name:  "empty",
			pw:    "",
			unmet: []string{"at least 8 bytes", "an upper-case letter", "a lower-case letter", "a digit"},
		},
		// Lengths count bytes (bcrypt's limit), letters count as Unicode.
		{name: "multi-byte letters reach 8 bytes", pw: "ÄäÄä1", unmet: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PasswordPolicy(tt.pw)
			if len(got) != len(tt.unmet) {
				t.Fatalf("unmet %q, want %q", got, tt.unmet)
			}
			for i := range got {
				if got[i] != tt.unmet[i] {
					t.Fatalf("unmet %q, want %q", got, tt.unmet)
				}
			}
		})
	}
}

// meets is the route guard's rule (internal/api): a user passes a route
// whose minimum role ranks no higher than their own.
func meets(userRole, minRole string) bool { return RoleRank(userRole) >= RoleRank(minRole) }

func TestRoleOrdering(t *testing.T) {
	tests := []struct {
		user, min string
		allowed   bool
	}{
		{user: RoleViewer, min: RoleViewer, allowed: true},
		{user: RoleViewer, min: RoleOperator, allowed: false},
		{user: RoleViewer, min: RoleAdmin, allowed: false},
		{user: RoleOperator, min: RoleViewer, allowed: true},
		{user: RoleOperator, min: RoleOperator, allowed: true},
		{user: RoleOperator, min: RoleAdmin, allowed: false},
		{user: RoleAdmin, min: RoleViewer, allowed: true},
		{user: RoleAdmin, min: RoleOperator, allowed: true},
		{user: RoleAdmin, min: RoleAdmin, allowed: true},
		{user: "superuser", min: RoleViewer, allowed: false},
		{user: "Admin", min: RoleViewer, allowed: false},
		{user: "", min: RoleViewer, allowed: false},
	}
	for _, tt := range tests {
		t.Run(tt.user+" on "+tt.min, func(t *testing.T) {
			if got := meets(tt.user, tt.min); got != tt.allowed {
				t.Fatalf("rank %d against %d: allowed %v, want %v", RoleRank(tt.user), RoleRank(tt.min), got, tt.allowed)
			}
		})
	}
}

func TestSetupMakesTheFirstAdminOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	u, tok, err := f.svc.Setup(ctx, NewUser{
		Username: "first",
		Email:    "first@example.org",
		Password: adminPassword,
		Role:     RoleViewer,
	})
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != RoleAdmin || !u.IsActive || u.TokenVersion != 1 {
		t.Fatalf("setup user %+v: want an active admin at token version 1", u)
	}
	if p, err := f.svc.Authenticate(ctx, tok.AccessToken); err != nil || p.User.ID != u.ID {
		t.Fatalf("setup tokens: principal %+v, %v", p.User, err)
	}

	_, _, err = f.svc.Setup(ctx, NewUser{Username: "second", Email: "second@example.org", Password: adminPassword})
	if !errors.Is(err, store.ErrSetupDone) {
		t.Fatalf("second setup: %v, want ErrSetupDone", err)
	}
	if n, err := f.svc.UserCount(ctx); err != nil || n != 1 {
		t.Fatalf("user count %d, %v; want 1", n, err)
	}
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.setup(t)
	viewer := f.createUser(t, "vera", RoleViewer)
	disabled := f.createUser(t, "dora", RoleViewer)
	off := false
	if _, _, err := f.svc.UpdateUser(ctx, disabled.ID, UserPatch{IsActive: &off}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		login    string
		password string
		wantID   int64
		wantErr  error
	}{
		{
			name:     "username",
			login:    "vera",
			password: userPassword,
			wantID:   viewer.ID,
		},
		{
			name:     "email",
			login:    "vera@example.org",
			password: userPassword,
			wantID:   viewer.ID,
		},
		{
			name:     "email in other case",
			login:    "VERA@example.org",
			password: userPassword,
			wantID:   viewer.ID,
		},
		{
			name:     "surrounding blanks",
			login:    "  vera\t",
			password: userPassword,
			wantID:   viewer.ID,
		},
		{
			name:     "wrong password",
			login:    "vera",
			password: adminPassword,
			wantErr:  ErrInvalidCredentials,
		},
		{
			name:     "unknown user",
			login:    "nobody",
			password: userPassword,
			wantErr:  ErrInvalidCredentials,
		},
		{
			name:     "disabled user",
			login:    "dora",
			password: userPassword,
			wantErr:  ErrUserDisabled,
		},
		// A wrong password must not reveal that the account exists but is disabled.
		{
			name:     "disabled user, wrong password",
			login:    "dora",
			password: "nope",
			wantErr:  ErrInvalidCredentials,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, tok, err := f.svc.Login(ctx, tt.login, tt.password, false)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if tok.AccessToken != "" || tok.RefreshToken != "" {
					t.Fatalf("failed login issued tokens: %+v", tok)
				}
				return
			}
			if u.ID != tt.wantID {
				t.Fatalf("logged in as %d, want %d", u.ID, tt.wantID)
			}
			p, err := f.svc.Authenticate(ctx, tok.AccessToken)
			if err != nil || p.User.ID != tt.wantID || p.Claims.Role != RoleViewer {
				t.Fatalf("authenticate: %+v %+v %v", p.User, p.Claims, err)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin, tok := f.setup(t)
	disabled := f.createUser(t, "dora", RoleViewer)
	off := false
	disabled, _, err := f.svc.UpdateUser(ctx, disabled.ID, UserPatch{IsActive: &off})
	if err != nil {
		t.Fatal(err)
	}

	now := f.clock.Now()
	// valid returns access claims for admin at now, which each case spoils in one way.
	valid := func() Claims {
		return Claims{
			Type:         "access",
			Role:         RoleAdmin,
			TokenVersion: admin.TokenVersion,
			RegisteredClaims: jwt.RegisteredClaims{
				Subject:   strconv.FormatInt(admin.ID, 10),
				IssuedAt:  jwt.NewNumericDate(now),
				ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
				ID:        "jti-test",
			},
		}
	}
	with := func(change func(*Claims)) string {
		c := valid()
		change(&c)
		return sign(t, jwt.SigningMethodHS256, testSecret, c)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		token   string
		wantID  int64
		wantErr error
	}{
		{name: "issued access token", token: tok.AccessToken, wantID: admin.ID},
		{name: "crafted valid token", token: with(func(*Claims) {}), wantID: admin.ID},
		{name: "refresh token as access", token: tok.RefreshToken, wantErr: ErrInvalidToken},
		{name: "wrong type claim", token: with(func(c *Claims) { c.Type = "refresh" }), wantErr: ErrInvalidToken},
		{
			name:    "wrong secret",
			token:   sign(t, jwt.SigningMethodHS256, []byte("another secret of at least 32 bytes!"), valid()),
			wantErr: ErrInvalidToken,
		},
		{name: "HS512", token: sign(t, jwt.SigningMethodHS512, testSecret, valid()), wantErr: ErrInvalidToken},
		{name: "alg none", token: none, wantErr: ErrInvalidToken},
		{name: "garbage", token: "not.a.token", wantErr: ErrInvalidToken},
		{
			name:   "expired inside the leeway",
			token:  with(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-59 * time.Second)) }),
			wantID: admin.ID,
		},
		{
			name:    "expired beyond the leeway",
			token:   with(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-61 * time.Second)) }),
			wantErr: ErrTokenExpired,
		},
		{name: "no expiry", token: with(func(c *Claims) { c.ExpiresAt = nil }), wantErr: ErrInvalidToken},
		{
			name:    "issued in the future",
			token:   with(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(2 * time.Minute)) }),
			wantErr: ErrInvalidToken,
		},
		{name: "no token id", token: with(func(c *Claims) { c.ID = "" }), wantErr: ErrInvalidToken},
		{name: "subject not a number", token: with(func(c *Claims) { c.Subject = "admin" }), wantErr: ErrInvalidToken},
		{name: "subject unknown", token: with(func(c *Claims) { c.Subject = "999" }), wantErr: ErrInvalidToken},
		{name: "older token version", token: with(func(c *Claims) { c.TokenVersion-- }), wantErr: ErrTokenRevoked},
		{
			name: "disabled user",
			token: with(func(c *Claims) {
				c.Subject = strconv.FormatInt(disabled.ID, 10)
				c.TokenVersion = disabled.TokenVersion
			}),
			wantID:  disabled.ID,
			wantErr: ErrUserDisabled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.svc.Authenticate(ctx, tt.token)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			// A disabled user's principal is still set, so the caller can tell who it was.
			if p.User.ID != tt.wantID {
				t.Fatalf("principal user %d, want %d", p.User.ID, tt.wantID)
			}
		})
	}
}

func TestAccessTokenExpiresWithTheClock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, tok := f.setup(t)

	steps := []struct {
		name    string
		advance time.Duration
		wantErr error
	}{
		{name: "fresh", advance: 0, wantErr: nil},
		{name: "at expiry", advance: 30 * time.Minute, wantErr: nil},
		{name: "inside the leeway", advance: 59 * time.Second, wantErr: nil},
		{name: "beyond the leeway", advance: 2 * time.Second, wantErr: ErrTokenExpired},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			f.clock.Advance(st.advance)
			if _, err := f.svc.Authenticate(ctx, tok.AccessToken); !errors.Is(err, st.wantErr) {
				t.Fatalf("error %v, want %v", err, st.wantErr)
			}
		})
	}
}

func TestRefreshRotates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin, first := f.setup(t)

	u, second, err := f.svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != admin.ID || second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatalf("refresh gave user %d and tokens %+v", u.ID, second)
	}
	if _, err := f.svc.Authenticate(ctx, second.AccessToken); err != nil {
		t.Fatalf("rotated access token: %v", err)
	}

	t.Run("presented refresh token is spent", func(t *testing.T) {
		if _, _, err := f.svc.Refresh(ctx, first.RefreshToken); !errors.Is(err, ErrTokenRevoked) {
			t.Fatalf("reuse: %v, want ErrTokenRevoked", err)
		}
	})
	t.Run("spent token stays spent after a restart", func(t *testing.T) {
		restarted := f.newService(t)
		if _, _, err := restarted.Refresh(ctx, first.RefreshToken); !errors.Is(err, ErrTokenRevoked) {
			t.Fatalf("reuse after restart: %v, want ErrTokenRevoked", err)
		}
	})
	t.Run("access token is no refresh token", func(t *testing.T) {
		if _, _, err := f.svc.Refresh(ctx, second.AccessToken); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("access as refresh: %v, want ErrInvalidToken", err)
		}
	})
	t.Run("refresh token expires", func(t *testing.T) {
		f.clock.Advance(7*24*time.Hour + 61*time.Second)
		if _, _, err := f.svc.Refresh(ctx, second.RefreshToken); !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("expired refresh: %v, want ErrTokenExpired", err)
		}
	})
}

func TestRefreshAfterLogoutAll(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, tok := f.setup(t)
	other := f.login(t, "admin", adminPassword)

	p, err := f.svc.Authenticate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Logout(ctx, p, "", true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.Refresh(ctx, other.RefreshToken); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("refresh of another session after logout-all: %v, want ErrTokenRevoked", err)
	}
}

func TestLogout(t *testing.T) {
	tests := []struct {
		name string
		// refresh picks the refresh token presented with the logout.
		refresh           func(own, foreign Tokens) string
		all               bool
		wantCount         int
		wantOwnRefreshOK  bool
		wantOtherSessions bool // another login of the same user keeps working
		wantRevokeAll     bool
	}{
		{
			name:              "access token only",
			refresh:           func(own, foreign Tokens) string { return "" },
			wantCount:         1,
			wantOwnRefreshOK:  true,
			wantOtherSessions: true,
		},
		{
			name:              "with own refresh token",
			refresh:           func(own, foreign Tokens) string { return own.RefreshToken },
			wantCount:         2,
			wantOwnRefreshOK:  false,
			wantOtherSessions: true,
		},
		{
			name:              "with another user's refresh token",
			refresh:           func(own, foreign Tokens) string { return foreign.RefreshToken },
			wantCount:         1,
			wantOwnRefreshOK:  true,
			wantOtherSessions: true,
		},
		{
			name:              "with a malformed refresh token",
			refresh:           func(own, foreign Tokens) string { return "junk" },
			wantCount:         1,
			wantOwnRefreshOK:  true,
			wantOtherSessions: true,
		},
		{
			name:              "all sessions",
			refresh:           func(own, foreign Tokens) string { return own.RefreshToken },
			all:               true,
			wantCount:         3,
			wantOwnRefreshOK:  false,
			wantOtherSessions: false,
			wantRevokeAll:     true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			admin, own := f.setup(t)
			f.createUser(t, "vera", RoleViewer)
			foreign := f.login(t, "vera", userPassword)
			otherSession := f.login(t, "admin", adminPassword)

			p, err := f.svc.Authenticate(ctx, own.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			n, err := f.svc.Logout(ctx, p, tt.refresh(own, foreign), tt.all)
			if err != nil || n != tt.wantCount {
				t.Fatalf("logout revoked %d (%v), want %d", n, err, tt.wantCount)
			}

			if _, err := f.svc.Authenticate(ctx, own.AccessToken); !errors.Is(err, ErrTokenRevoked) {
				t.Fatalf("access token after logout: %v, want ErrTokenRevoked", err)
			}
			if _, err := f.svc.Authenticate(ctx, foreign.AccessToken); err != nil {
				t.Fatalf("another user's session was touched: %v", err)
			}
			if _, err := f.svc.Authenticate(ctx, otherSession.AccessToken); (err == nil) != tt.wantOtherSessions {
				t.Fatalf("other session of the same user: %v, want usable %v", err, tt.wantOtherSessions)
			}
			// Spend the foreign token last so a wrongly revoked one shows up above first.
			if _, _, err := f.svc.Refresh(ctx, foreign.RefreshToken); err != nil {
				t.Fatalf("another user's refresh token: %v", err)
			}
			if _, _, err := f.svc.Refresh(ctx, own.RefreshToken); (err == nil) != tt.wantOwnRefreshOK {
				t.Fatalf("own refresh token after logout: %v, want usable %v", err, tt.wantOwnRefreshOK)
			}

			want := []revocation{{userID: admin.ID, jti: p.Claims.ID}}
			if tt.wantRevokeAll {
				want = append(want, revocation{userID: admin.ID, jti: ""})
			}
			assertRevocations(t, f.revocations(), want)
		})
	}
}

func assertRevocations(t *testing.T, got, want []revocation) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("revocation callbacks %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("revocation callbacks %+v, want %+v", got, want)
		}
	}
}

func TestUpdateUser(t *testing.T) {
	str := func(s string) *string { return &s }
	boolean := func(b bool) *bool { return &b }

	tests := []struct {
		name        string
		deactivated bool // the user starts deactivated
		patch       UserPatch
		wantChanged []string
		wantRevoke  bool
		check       func(t *testing.T, u store.User)
	}{
		{
			name:        "email",
			patch:       UserPatch{Email: str("new@example.org")},
			wantChanged: []string{"email"},
			check: func(t *testing.T, u store.User) {
				if u.Email != "new@example.org" {
					t.Fatalf("email %q", u.Email)
				}
			},
		},
		{
			name:        "full name",
			patch:       UserPatch{FullName: str("Vera V.")},
			wantChanged: []string{"full_name"},
		},
		{
			name:        "role",
			patch:       UserPatch{Role: str(RoleOperator)},
			wantChanged: []string{"role"},
			wantRevoke:  true,
			check: func(t *testing.T, u store.User) {
				if u.Role != RoleOperator {
					t.Fatalf("role %q", u.Role)
				}
			},
		},
		{
			name:        "deactivate",
			patch:       UserPatch{IsActive: boolean(false)},
			wantChanged: []string{"is_active"},
			wantRevoke:  true,
		},
		{
			name:        "reactivate",
			deactivated: true,
			patch:       UserPatch{IsActive: boolean(true)},
			wantChanged: []string{"is_active"},
		},
		{
			name:        "several fields",
			patch:       UserPatch{Email: str("v2@example.org"), Role: str(RoleAdmin)},
			wantChanged: []string{"email", "role"},
			wantRevoke:  true,
		},
		{
			name:  "same values",
			patch: UserPatch{Email: str("vera@example.org"), Role: str(RoleViewer), IsActive: boolean(true)},
		},
		{name: "empty patch", patch: UserPatch{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.setup(t)
			before := f.createUser(t, "vera", RoleViewer)
			if tt.deactivated {
				var err error
				before, _, err = f.svc.UpdateUser(ctx, before.ID, UserPatch{IsActive: boolean(false)})
				if err != nil {
					t.Fatal(err)
				}
			}
			tok, err := f.svc.IssueFor(before)
			if err != nil {
				t.Fatal(err)
			}
			revokesBefore := len(f.revocations())

			u, changed, err := f.svc.UpdateUser(ctx, before.ID, tt.patch)
			if err != nil {
				t.Fatal(err)
			}
			if len(changed) != len(tt.wantChanged) {
				t.Fatalf("changed %q, want %q", changed, tt.wantChanged)
			}
			for i := range changed {
				if changed[i] != tt.wantChanged[i] {
					t.Fatalf("changed %q, want %q", changed, tt.wantChanged)
				}
			}

			stored, err := f.svc.User(ctx, before.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !sameAccount(stored, u) {
				t.Fatalf("stored %+v, returned %+v", stored, u)
			}
			if tt.check != nil {
				tt.check(t, stored)
			}

			wantVersion := before.TokenVersion
			if tt.wantRevoke {
				wantVersion++
			}
			if stored.TokenVersion != wantVersion {
				t.Fatalf("token version %d, want %d", stored.TokenVersion, wantVersion)
			}
			if _, err := f.svc.Authenticate(ctx, tok.AccessToken); tt.wantRevoke != errors.Is(err, ErrTokenRevoked) {
				t.Fatalf("token issued before the change: %v, want revoked %v", err, tt.wantRevoke)
			}
			var want []revocation
			if tt.wantRevoke {
				want = []revocation{{userID: before.ID}}
			}
			assertRevocations(t, f.revocations()[revokesBefore:], want)
		})
	}
}

// sameAccount compares what a user patch can change; times differ in location
// between the stored and the returned copy.
func sameAccount(a, b store.User) bool {
	return a.ID == b.ID &&
		a.Email == b.Email &&
		a.FullName == b.FullName &&
		a.Role == b.Role &&
		a.IsActive == b.IsActive &&
		a.TokenVersion == b.TokenVersion &&
		a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestUpdateUserKeepsAnAdmin(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin, tok := f.setup(t)
	viewer := RoleViewer

	if _, _, err := f.svc.UpdateUser(ctx, admin.ID, UserPatch{Role: &viewer}); !errors.Is(err, store.ErrLastAdmin) {
		t.Fatalf("demoting the last admin: %v, want ErrLastAdmin", err)
	}
	if _, err := f.svc.Authenticate(ctx, tok.AccessToken); err != nil {
		t.Fatalf("a refused change revoked the admin's token: %v", err)
	}
	if got := f.revocations(); len(got) != 0 {
		t.Fatalf("a refused change ran revocation callbacks: %+v", got)
	}
	if _, _, err := f.svc.UpdateUser(ctx, 999, UserPatch{Role: &viewer}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown user: %v, want ErrNotFound", err)
	}
}

func TestDeleteUser(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin, _ := f.setup(t)
	vera := f.createUser(t, "vera", RoleViewer)

	tests := []struct {
		name    string
		id      int64
		wantErr error
	}{
		{name: "self", id: admin.ID, wantErr: ErrCannotDeleteSelf},
		{name: "another user", id: vera.ID},
		{name: "unknown user", id: 999, wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			revokesBefore := len(f.revocations())
			err := f.svc.DeleteUser(ctx, admin, tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}

			var want []revocation
			if tt.wantErr == nil {
				want = []revocation{{userID: tt.id}}
				if _, err := f.svc.User(ctx, tt.id); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("deleted user still readable: %v", err)
				}
			}
			assertRevocations(t, f.revocations()[revokesBefore:], want)
		})
	}

	users, err := f.svc.Users(ctx)
	if err != nil || len(users) != 1 || users[0].ID != admin.ID {
		t.Fatalf("users left %+v, %v; want the admin only", users, err)
	}
}

func TestSetPassword(t *testing.T) {
	str := func(s string) *string { return &s }
	const next = "Next-pass99"

	tests := []struct {
		name    string
		current *string
		wantErr error
	}{
		{name: "self-service with the current password", current: str(userPassword)},
		{
			name:    "self-service with a wrong current password",
			current: str("Wrong-pass1"),
			wantErr: ErrInvalidCurrentPwd,
		},
		{name: "admin reset", current: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.setup(t)
			vera := f.createUser(t, "vera", RoleViewer)
			old := f.login(t, "vera", userPassword)

			u, err := f.svc.SetPassword(ctx, vera.ID, tt.current, next)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}

			changed := tt.wantErr == nil
			_, _, oldErr := f.svc.Login(ctx, "vera", userPassword, false)
			_, _, newErr := f.svc.Login(ctx, "vera", next, false)
			if (oldErr == nil) == changed || (newErr == nil) != changed {
				t.Fatalf("after change=%v: old password %v, new password %v", changed, oldErr, newErr)
			}
			_, err = f.svc.Authenticate(ctx, old.AccessToken)
			if errors.Is(err, ErrTokenRevoked) != changed {
				t.Fatalf("token from before: %v, want revoked %v", err, changed)
			}
			if !changed {
				return
			}

			// The caller gets a fresh pair for the session that made the change.
			fresh, err := f.svc.IssueFor(u)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Authenticate(ctx, fresh.AccessToken); err != nil {
				t.Fatalf("fresh token after the change: %v", err)
			}
			assertRevocations(t, f.revocations(), []revocation{{userID: vera.ID}})
		})
	}

	t.Run("unknown user", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.svc.SetPassword(context.Background(), 999, nil, next); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("error %v, want ErrNotFound", err)
		}
	})
}

func TestPurgeExpiredDropsOnlyExpiredEntries(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, tok := f.setup(t)
	p, err := f.svc.Authenticate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Logout(ctx, p, tok.RefreshToken, false); err != nil {
		t.Fatal(err)
	}
	refreshID := claimsOf(t, tok.RefreshToken).ID

	// The access entry is kept until its expiry plus the leeway; the refresh
	// entry lives for a week.
	f.clock.Advance(30*time.Minute + 61*time.Second)
	if err := f.svc.PurgeExpired(ctx); err != nil {
		t.Fatal(err)
	}

	if f.svc.isBlacklisted(p.Claims.ID) {
		t.Fatal("expired access token still in the in-memory blacklist")
	}
	if !f.svc.isBlacklisted(refreshID) {
		t.Fatal("unexpired refresh token left the in-memory blacklist")
	}
	stored, err := f.st.LoadBlacklist(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := stored[p.Claims.ID]; ok || len(stored) != 1 {
		t.Fatalf("stored blacklist %v: want only the refresh token %s", stored, refreshID)
	}
	if _, _, err := f.svc.Refresh(ctx, tok.RefreshToken); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("refresh token after purge: %v, want ErrTokenRevoked", err)
	}
}
