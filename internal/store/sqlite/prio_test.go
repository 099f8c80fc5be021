package sqlite

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// With every connection of the read pool taken (long history queries),
// the readiness ping and the account lookups of authentication and login
// still answer at once, on the reserved connections.
func TestReservedReadsAnswerWhileTheReadPoolIsFull(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	u, err := s.CreateUser(ctx, store.User{Username: "ops", Email: "ops@example.org", Role: "admin", IsActive: true,
		PasswordHash: "x", CreatedAt: time.Now(), UpdatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}

	var held []*sql.Conn
	for _, db := range []*sql.DB{s.read, s.control.read} {
		for range db.Stats().MaxOpenConnections {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	full, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.CountUsers(full); err == nil {
		t.Fatal("the read pool is not full: a read on it answered")
	}

	quick, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.Ping(quick); err != nil {
		t.Fatalf("ping with a full read pool: %v", err)
	}
	if got, err := s.GetUser(quick, u.ID); err != nil || got.Username != "ops" {
		t.Fatalf("user lookup with a full read pool: %+v, %v", got, err)
	}
	if got, err := s.FindUserByLogin(quick, "ops"); err != nil || got.ID != u.ID {
		t.Fatalf("login lookup with a full read pool: %+v, %v", got, err)
	}
}
