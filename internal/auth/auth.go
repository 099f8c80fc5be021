// Package auth is users, passwords, tokens and roles (docs/api.md §2, §4, §5):
// bcrypt hashes, HS256 access and refresh tokens with rotation and a
// blacklist, token versions that revoke every token of a user at once, and
// the login rate limit.
package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Roles, ordered viewer < operator < admin.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// RoleRank orders roles; unknown roles rank 0.
func RoleRank(r string) int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Errors mapped to API codes.
var (
	ErrInvalidCredentials = errors.New("invalid credentials")
	ErrUserDisabled       = errors.New("user disabled")
	ErrInvalidToken       = errors.New("invalid token")
	ErrTokenExpired       = errors.New("token expired")
	ErrTokenRevoked       = errors.New("token revoked")
	ErrInvalidCurrentPwd  = errors.New("current password is wrong")
	ErrCannotDeleteSelf   = errors.New("an admin cannot delete their own account")
)

// Config tunes the service.
type Config struct {
	Secret     []byte
	AccessTTL  time.Duration // default 30 min
	RememberMe time.Duration // default 7 days
	RefreshTTL time.Duration // default 7 days
	BcryptCost int           // default 12 (tests lower it)
}

// Tokens is a login's token pair (docs/api.md §4).
type Tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

// Claims are the JWT claims of both token types.
type Claims struct {
	Type         string `json:"type"`
	Role         string `json:"role,omitempty"`
	TokenVersion int64  `json:"token_version"`
	jwt.RegisteredClaims
}

// Service is the auth domain.
type Service struct {
	cfg       Config
	store     store.Users
	dummyHash []byte
	now       func() time.Time

	mu        sync.RWMutex
	blacklist map[string]time.Time

	revokedMu sync.Mutex
	onRevoke  []func(userID int64, jti string)
}

// New builds the service and loads the blacklist.
func New(ctx context.Context, cfg Config, st store.Users) (*Service, error) {
	if len(cfg.Secret) < 32 {
		return nil, errors.New("jwt secret shorter than 32 bytes")
	}
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = 30 * time.Minute
	}
	if cfg.RememberMe <= 0 {
		cfg.RememberMe = 7 * 24 * time.Hour
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = 7 * 24 * time.Hour
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = 12
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a real password"), cfg.BcryptCost)
	if err != nil {
		return nil, err
	}
	bl, err := st.LoadBlacklist(ctx, time.Now())
	if err != nil {
		return nil, fmt.Errorf("load token blacklist: %w", err)
	}
	return &Service{
		cfg:       cfg,
		store:     st,
		dummyHash: dummy,
		now:       time.Now,
		blacklist: bl,
	}, nil
}

// OnRevoke registers a callback run when tokens are revoked: jti for one
// token, or "" for every token of the user (WebSocket sessions close on it).
func (s *Service) OnRevoke(f func(userID int64, jti string)) {
	s.revokedMu.Lock()
	s.onRevoke = append(s.onRevoke, f)
	s.revokedMu.Unlock()
}

func (s *Service) revoked(userID int64, jti string) {
	s.revokedMu.Lock()
	fs := append([]func(int64, string){}, s.onRevoke...)
	s.revokedMu.Unlock()
	for _, f := range fs {
		f(userID, jti)
	}
}

// PasswordPolicy returns the unmet rules of docs/api.md §2.7 (empty = acceptable).
func PasswordPolicy(pw string) []string {
	var unmet []string
	if len(pw) < 8 {
		unmet = append(unmet, "at least 8 bytes")
	}
	if len(pw) > 72 {
		unmet = append(unmet, "at most 72 bytes")
	}
	var up, low, dig bool
	for _, r := range pw {
		up = up || unicode.IsUpper(r)
		low = low || unicode.IsLower(r)
		dig = dig || unicode.IsDigit(r)
	}
	if !up {
		unmet = append(unmet, "an upper-case letter")
	}
	if !low {
		unmet = append(unmet, "a lower-case letter")
	}
	if !dig {
		unmet = append(unmet, "a digit")
	}
	return unmet
}

func (s *Service) hash(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), s.cfg.BcryptCost)
	return string(h), err
}

// NewUser is the input of account creation.
type NewUser struct {
	Username, Email, FullName, Password, Role string
}

func (s *Service) build(n NewUser) (store.User, error) {
	h, err := s.hash(n.Password)
	if err != nil {
		return store.User{}, err
	}
	now := s.now()
	return store.User{
		Username:     n.Username,
		Email:        n.Email,
		FullName:     n.FullName,
		Role:         n.Role,
		IsActive:     true,
		PasswordHash: h,
		TokenVersion: 1,
		CreatedAt:    now,
		UpdatedAt:    now,
	}, nil
}

// Setup creates the first account as admin and logs it in.
func (s *Service) Setup(ctx context.Context, n NewUser) (store.User, Tokens, error) {
	n.Role = RoleAdmin
	u, err := s.build(n)
	if err != nil {
		return u, Tokens{}, err
	}
	u, err = s.store.CreateFirstUser(ctx, u)
	if err != nil {
		return u, Tokens{}, err
	}
	t, err := s.issue(u, false)
	return u, t, err
}

// CreateUser creates an account (admin action).
func (s *Service) CreateUser(ctx context.Context, n NewUser) (store.User, error) {
	u, err := s.build(n)
	if err != nil {
		return u, err
	}
	return s.store.CreateUser(ctx, u)
}

// Login checks credentials; unknown users cost as much as known ones.
func (s *Service) Login(ctx context.Context, login, password string, remember bool) (store.User, Tokens, error) {
	u, err := s.store.FindUserByLogin(ctx, strings.TrimSpace(login))
	if errors.Is(err, store.ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return u, Tokens{}, ErrInvalidCredentials
	}
	if err != nil {
		return u, Tokens{}, err
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return u, Tokens{}, ErrInvalidCredentials
	}
	if !u.IsActive {
		return u, Tokens{}, ErrUserDisabled
	}
	t, err := s.issue(u, remember)
	return u, t, err
}

func (s *Service) issue(u store.User, remember bool) (Tokens, error) {
	now := s.now()
	ttl := s.cfg.AccessTTL
	if remember {
		ttl = s.cfg.RememberMe
	}
	sub := fmt.Sprint(u.ID)
	access := Claims{
		Type:         "access",
		Role:         u.Role,
		TokenVersion: u.TokenVersion,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        uuid.NewString(),
		},
	}
	refresh := Claims{Type: "refresh", TokenVersion: u.TokenVersion, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.RefreshTTL)),
		ID:        uuid.NewString(),
	}}
	a, err := jwt.NewWithClaims(jwt.SigningMethodHS256, access).SignedString(s.cfg.Secret)
	if err != nil {
		return Tokens{}, err
	}
	r, err := jwt.NewWithClaims(jwt.SigningMethodHS256, refresh).SignedString(s.cfg.Secret)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{
		AccessToken:  a,
		RefreshToken: r,
		TokenType:    "bearer",
		ExpiresIn:    int64(ttl / time.Second),
	}, nil
}

// parse verifies signature, algorithm (HS256 only), expiry (60 s leeway) and
// type. Expiry is judged by the service clock, the one that issued the token.
func (s *Service) parse(token, typ string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.cfg.Secret, nil },
		jwt.WithValidMethods([]string{"HS256"}),
		jwt.WithLeeway(60*time.Second),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrTokenExpired
	case err != nil:
		return nil, ErrInvalidToken
	case c.Type != typ || c.ID == "":
		return nil, ErrInvalidToken
	}
	return &c, nil
}

func (s *Service) isBlacklisted(jti string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.blacklist[jti]
	return ok
}

// Principal is an authenticated request's user and token.
type Principal struct {
	User   store.User
	Claims *Claims
}

// Authenticate validates an access token (docs/api.md §2.3 steps 1–4) and loads the
// user; a deactivated user gives ErrUserDisabled with the principal set.
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, error) {
	c, err := s.parse(token, "access")
	if err != nil {
		return Principal{}, err
	}
	return s.check(ctx, c)
}

func (s *Service) check(ctx context.Context, c *Claims) (Principal, error) {
	if s.isBlacklisted(c.ID) {
		return Principal{}, ErrTokenRevoked
	}
	var id int64
	if _, err := fmt.Sscan(c.Subject, &id); err != nil {
		return Principal{}, ErrInvalidToken
	}
	u, err := s.store.GetUser(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrInvalidToken
	}
	if err != nil {
		return Principal{}, err
	}
	if c.TokenVersion < u.TokenVersion {
		return Principal{}, ErrTokenRevoked
	}
	p := Principal{User: u, Claims: c}
	if !u.IsActive {
		return p, ErrUserDisabled
	}
	return p, nil
}

func (s *Service) revoke(ctx context.Context, c *Claims) error {
	exp := s.now().Add(s.cfg.RefreshTTL)
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time.Add(60 * time.Second)
	}
	if err := s.store.BlacklistToken(ctx, c.ID, exp); err != nil {
		return err
	}
	s.mu.Lock()
	s.blacklist[c.ID] = exp
	s.mu.Unlock()
	return nil
}

// Refresh rotates a refresh token: the presented one is revoked before the
// new pair is issued.
func (s *Service) Refresh(ctx context.Context, refresh string) (store.User, Tokens, error) {
	c, err := s.parse(refresh, "refresh")
	if err != nil {
		return store.User{}, Tokens{}, err
	}
	p, err := s.check(ctx, c)
	if err != nil {
		return p.User, Tokens{}, err
	}
	if err := s.revoke(ctx, c); err != nil {
		return p.User, Tokens{}, err
	}
	t, err := s.issue(p.User, false)
	return p.User, t, err
}

// Logout revokes the access token, the refresh token if it belongs to the
// same user, and with all every token of the user (token_version + 1).
func (s *Service) Logout(ctx context.Context, p Principal, refresh string, all bool) (int, error) {
	n := 0
	if err := s.revoke(ctx, p.Claims); err != nil {
		return n, err
	}
	n++
	s.revoked(p.User.ID, p.Claims.ID)
	if refresh != "" {
		if c, err := s.parse(refresh, "refresh"); err == nil && c.Subject == p.Claims.Subject && !s.isBlacklisted(c.ID) {
			if err := s.revoke(ctx, c); err != nil {
				return n, err
			}
			n++
		}
	}
	if all {
		u := p.User
		u.TokenVersion++
		u.UpdatedAt = s.now()
		if err := s.store.UpdateUser(ctx, u); err != nil {
			return n, err
		}
		n++
		s.revoked(u.ID, "")
	}
	return n, nil
}

// UserPatch is an admin's change to a user (docs/api.md §5 PATCH).
type UserPatch struct {
	Email, FullName, Role *string
	IsActive              *bool
}

// UpdateUser applies a patch; a role change or deactivation revokes the
// user's tokens.
func (s *Service) UpdateUser(ctx context.Context, id int64, p UserPatch) (store.User, []string, error) {
	u, err := s.store.GetUser(ctx, id)
	if err != nil {
		return u, nil, err
	}
	var changed []string
	bump := false
	if p.Email != nil && *p.Email != u.Email {
		u.Email, changed = *p.Email, append(changed, "email")
	}
	if p.FullName != nil && *p.FullName != u.FullName {
		u.FullName, changed = *p.FullName, append(changed, "full_name")
	}
	if p.Role != nil && *p.Role != u.Role {
		u.Role, changed, bump = *p.Role, append(changed, "role"), true
	}
	if p.IsActive != nil && *p.IsActive != u.IsActive {
		u.IsActive, changed = *p.IsActive, append(changed, "is_active")
		bump = bump || !*p.IsActive
	}
	if len(changed) == 0 {
		return u, nil, nil
	}
	if bump {
		u.TokenVersion++
	}
	u.UpdatedAt = s.now()
	if err := s.store.UpdateUser(ctx, u); err != nil {
		return u, nil, err
	}
	if bump {
		s.revoked(u.ID, "")
	}
	return u, changed, nil
}

// DeleteUser removes an account; an admin cannot delete themself.
func (s *Service) DeleteUser(ctx context.Context, actor store.User, id int64) error {
	if actor.ID == id {
		return ErrCannotDeleteSelf
	}
	if err := s.store.DeleteUser(ctx, id); err != nil {
		return err
	}
	s.revoked(id, "")
	return nil
}

// SetPassword sets a new password and revokes the user's tokens. With
// current != nil the caller must know the old password.
func (s *Service) SetPassword(ctx context.Context, id int64, current *string, next string) (store.User, error) {
	u, err := s.store.GetUser(ctx, id)
	if err != nil {
		return u, err
	}
	if current != nil && bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(*current)) != nil {
		return u, ErrInvalidCurrentPwd
	}
	h, err := s.hash(next)
	if err != nil {
		return u, err
	}
	u.PasswordHash, u.TokenVersion, u.UpdatedAt = h, u.TokenVersion+1, s.now()
	if err := s.store.UpdateUser(ctx, u); err != nil {
		return u, err
	}
	s.revoked(u.ID, "")
	return u, nil
}

// IssueFor gives a fresh token pair (after a self-service password change).
func (s *Service) IssueFor(u store.User) (Tokens, error) { return s.issue(u, false) }

// PurgeExpired drops blacklist entries of expired tokens (a daily job).
func (s *Service) PurgeExpired(ctx context.Context) error {
	now := s.now()
	if _, err := s.store.PurgeBlacklist(ctx, now); err != nil {
		return err
	}
	s.mu.Lock()
	for k, exp := range s.blacklist {
		if !exp.After(now) {
			delete(s.blacklist, k)
		}
	}
	s.mu.Unlock()
	return nil
}

// LoadSecret resolves the JWT secret (docs/api.md §2.2): a file (--jwt-secret-file or
// KAISER_JWT_SECRET_FILE) or KAISER_JWT_SECRET; both set fails; shorter than
// 32 bytes fails naming the source; none generates 32 random bytes in
// <dataDir>/jwt.secret (0600) and reuses them on later starts.
func LoadSecret(dataDir, file, fileSource, value string) ([]byte, error) {
	switch {
	case file != "" && value != "":
		return nil, errors.New("both a JWT secret file and KAISER_JWT_SECRET are set; use one")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fileSource, err)
		}
		b = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(b) < 32 {
			return nil, fmt.Errorf("%s: JWT secret is %d bytes, at least 32 are required", fileSource, len(b))
		}
		return b, nil
	case value != "":
		if len(value) < 32 {
			return nil, fmt.Errorf("KAISER_JWT_SECRET: JWT secret is %d bytes, at least 32 are required", len(value))
		}
		return []byte(value), nil
	}
	path := filepath.Join(dataDir, "jwt.secret")
	if b, err := os.ReadFile(path); err == nil {
		if len(b) < 32 {
			return nil, fmt.Errorf("%s: JWT secret is %d bytes, at least 32 are required", path, len(b))
		}
		return b, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return b, nil
}

// UserCount counts accounts.
func (s *Service) UserCount(ctx context.Context) (int, error) { return s.store.CountUsers(ctx) }

// Users lists accounts.
func (s *Service) Users(ctx context.Context) ([]store.User, error) { return s.store.ListUsers(ctx) }

// User reads one account.
func (s *Service) User(ctx context.Context, id int64) (store.User, error) {
	return s.store.GetUser(ctx, id)
}
