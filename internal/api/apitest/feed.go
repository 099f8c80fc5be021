package apitest

import (
	"net/http"
	"sync"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/live"
)

// FeedSession is a session the handshake handed to the feed, or one it revoked.
type FeedSession struct {
	User              int64
	ClientID, TokenID string
}

// Feed records what the WebSocket handshake hands over; an accepted request
// is answered 204 in place of an upgrade.
type Feed struct {
	mu       sync.Mutex
	Refusal  error // returned by Accept
	Answered int   // with Refusal: the status Accept wrote itself, like a failed upgrade
	Accepted []FeedSession
	Revoked  []FeedSession
	Closed   bool
}

var _ api.LiveFeed = (*Feed)(nil)

func (f *Feed) Accept(w http.ResponseWriter, _ *http.Request, userID int64, clientID, tokenID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Accepted = append(f.Accepted, FeedSession{User: userID, ClientID: clientID, TokenID: tokenID})
	if f.Answered != 0 {
		w.WriteHeader(f.Answered)
	}
	if f.Refusal != nil {
		return f.Refusal
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (f *Feed) Revoke(userID int64, tokenID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Revoked = append(f.Revoked, FeedSession{User: userID, TokenID: tokenID})
}

// Stats are fixed: 2 connections, 30 messages sent, 4 coalesced, 1 slow client.
func (f *Feed) Stats() live.Stats {
	return live.Stats{
		ActiveConnections:     2,
		MessagesSent:          30,
		MessagesCoalesced:     4,
		SlowClientDisconnects: 1,
	}
}

func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Closed = true
}
