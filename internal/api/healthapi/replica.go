package healthapi

import (
	"context"
	"net/http"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
)

// ReplicaStatus is a hub's part among the replicas of one site
// (docs/decisions/0029-replicas.md): role solo for a hub alone, primary
// for the holder of the jobs lease, standby for the others; Primary is the
// replica this one forwards to, nil while none is known.
type ReplicaStatus struct {
	Holder  string       `json:"holder"`
	Role    string       `json:"role"`
	Primary *ReplicaPeer `json:"primary"`
}

// ReplicaPeer is another replica as the leases table shows it.
type ReplicaPeer struct {
	Holder string `json:"holder"`
	URL    string `json:"url"`
}

// Replicas answers which part this hub plays.
type Replicas interface {
	ReplicaStatus(ctx context.Context) ReplicaStatus
}

// RegisterReplica adds GET /api/v1/health/replica, open like the probes:
// a load balancer or an operator asks any replica who the primary is.
func RegisterReplica(s *api.Server, r Replicas) {
	s.Group("health").Public("GET", "/api/v1/health/replica", "This hub's role among replicas",
		func(w http.ResponseWriter, req *http.Request) {
			ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
			defer cancel()
			api.WriteJSON(w, http.StatusOK, r.ReplicaStatus(ctx))
		}, api.Returns(ReplicaStatus{}))
}
