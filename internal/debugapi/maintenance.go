package debugapi

import (
	"net/http"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/schedule"
)

// jobStatus is one scheduled job of the maintenance status (API §16.1).
type jobStatus struct {
	JobID          string  `json:"job_id"`
	NextRun        *string `json:"next_run"`
	LastRun        *string `json:"last_run"`
	LastResult     *string `json:"last_result"`
	Runs           int64   `json:"runs"`
	Errors         int64   `json:"errors"`
	Skipped        int64   `json:"skipped"`
	Running        bool    `json:"running"`
	LastDurationMS float64 `json:"last_duration_ms"`
}

func jobJSON(st schedule.Stats) jobStatus {
	return jobStatus{
		JobID:          st.Name,
		NextRun:        api.Timestamp(st.NextRun),
		LastRun:        api.Timestamp(st.LastRun),
		LastResult:     api.NullString(st.LastResult),
		Runs:           st.Runs,
		Errors:         st.Errors,
		Skipped:        st.Skipped,
		Running:        st.Running,
		LastDurationMS: float64(st.LastDuration.Microseconds()) / 1000,
	}
}

type maintenanceStatus struct {
	Success        bool        `json:"success"`
	ServiceRunning bool        `json:"service_running"`
	Jobs           []jobStatus `json:"jobs"`
}

func (d *Debug) maintenanceRoutes() {
	d.admin("GET", "/api/v1/debug/maintenance/status", "The scheduler's jobs and their last and next runs",
		d.maintenanceStatus, nil, maintenanceStatus{})
}

func (d *Debug) maintenanceStatus(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := maintenanceStatus{Success: true, Jobs: []jobStatus{}}
	if d.jobs != nil {
		for _, st := range d.jobs.Stats() {
			out.Jobs = append(out.Jobs, jobJSON(st))
			// Every job loop sets its next run as it starts, so a next run
			// means the scheduler is running.
			out.ServiceRunning = out.ServiceRunning || !st.NextRun.IsZero()
		}
	}
	api.WriteJSON(w, http.StatusOK, out)
}
