package debugapi

import (
	"net/http"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/schedule"
)

// jobStatus is one scheduled job of the maintenance status (docs/api.md §16.1).
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

type triggerResponse struct {
	Success   bool   `json:"success"`
	JobID     string `json:"job_id"`
	Triggered bool   `json:"triggered"`
	Message   string `json:"message"`
}

// jobSchedule is one job of the maintenance config: how it is scheduled.
type jobSchedule struct {
	JobID string `json:"job_id"`
	// Trigger is interval (EverySeconds) or cron (Cron, read in the timezone).
	Trigger        string   `json:"trigger"`
	EverySeconds   *float64 `json:"every_seconds"`
	Cron           *string  `json:"cron"`
	TimeoutSeconds float64  `json:"timeout_seconds"`
}

type maintenanceConfig struct {
	Success  bool          `json:"success"`
	Timezone string        `json:"timezone"`
	Jobs     []jobSchedule `json:"jobs"`
}

func scheduleJSON(sc schedule.Schedule) jobSchedule {
	out := jobSchedule{
		JobID:          sc.Name,
		Trigger:        "interval",
		TimeoutSeconds: sc.Timeout.Seconds(),
	}
	if sc.Cron != "" {
		out.Trigger, out.Cron = "cron", &sc.Cron
	} else {
		every := sc.Every.Seconds()
		out.EverySeconds = &every
	}
	return out
}

func (d *Debug) maintenanceRoutes() {
	const base = "/api/v1/debug/maintenance"
	d.admin("GET", base+"/status", "The scheduler's jobs and their last and next runs", d.maintenanceStatus,
		nil, maintenanceStatus{})
	d.admin("GET", base+"/config", "The scheduler's jobs and how each is scheduled", d.maintenanceConfig,
		nil, maintenanceConfig{})
	d.admin("POST", base+"/trigger/{job_name}", "Run a scheduled job now", d.triggerJob, nil, triggerResponse{})
}

func (d *Debug) maintenanceConfig(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
	out := maintenanceConfig{Success: true, Timezone: "UTC", Jobs: []jobSchedule{}}
	if d.jobs != nil {
		out.Timezone = d.jobs.Location().String()
		for _, sc := range d.jobs.Schedules() {
			out.Jobs = append(out.Jobs, scheduleJSON(sc))
		}
	}
	api.WriteJSON(w, http.StatusOK, out)
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

// triggerJob runs a job now; a trigger while it runs coalesces (docs/domain.md §9).
func (d *Debug) triggerJob(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	name := r.PathValue("job_name")
	if d.jobs == nil || d.jobs.Trigger(name) != nil {
		api.WriteError(w, r, http.StatusBadRequest, "BAD_REQUEST", "unknown job '"+name+"'", map[string]any{"job_id": name})
		return
	}
	api.WriteJSON(w, http.StatusOK, triggerResponse{
		Success:   true,
		JobID:     name,
		Triggered: true,
		Message:   "job " + name + " triggered",
	})
}
