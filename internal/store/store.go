// Package store defines the hub's persistence records and the interfaces
// the domain uses; sqlite/ implements them (PostgreSQL can implement the same
// interfaces later without touching the domain).
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps a write that failed because the database cannot
// commit at all (disk full, I/O error, read-only or corrupt file), as
// opposed to the one operation being refused: the caller answers "try
// again later", not "your request is wrong".
var ErrUnavailable = errors.New("the database cannot commit")

// Device is the persisted device record (docs/domain.md §1, docs/api.md §6.2).
type Device struct {
	ID              string // UUID
	DeviceID        string // esp_id
	Name            string
	Status          string
	KaiserID        string
	ZoneID          string
	ZoneName        string
	MasterZoneID    string
	HardwareType    string
	IPAddress       string
	FirmwareVersion string
	Metadata        map[string]any
	LastSeen        *time.Time
	DiscoveredAt    *time.Time
	ApprovedAt      *time.Time
	ApprovedBy      string
	RejectionReason string
	CreatedAt       time.Time
	UpdatedAt       time.Time

	// Version orders the saves of one device. The domain raises it with
	// every change it saves, under the lock that made the change, and keeps
	// raising it across a delete and a re-creation; see Devices.SaveDevice.
	Version int64
}

// Transition is one recorded status change with its cause (docs/protocol.md L6).
type Transition struct {
	DeviceID string
	From, To string
	Cause    string
	At       time.Time

	// Version is the device record version the change was saved with; a
	// device's transitions read in version order, whatever order their
	// writes reached the store in.
	Version int64
}

// Heartbeat is one stored heartbeat: the device's health over time.
type Heartbeat struct {
	DeviceID   string
	ReceivedAt time.Time
	DeviceTime time.Time
	TimeSource string
	Uptime     int64
	HeapFree   int64
	RSSI       int64
	Seq        *int64
}

// Devices is what the device domain needs from persistence. Writes are
// queued on the single writer and committed in groups; Flush waits for
// everything queued before it.
type Devices interface {
	// LoadDevices returns every record, deleted ones included, with its
	// stored version.
	LoadDevices(ctx context.Context) ([]Device, error)
	// SaveDevice writes d only if d.Version is greater than the version
	// stored for d.DeviceID (or nothing is stored), decided in the write
	// itself. Snapshots taken under the domain's lock may therefore reach
	// the store in any order: an older one never replaces a newer one.
	SaveDevice(ctx context.Context, d Device) error
	AppendTransition(ctx context.Context, t Transition) error
	// SaveDeviceChange is SaveDevice and AppendTransition in one
	// transaction: a status change is stored whole or not at all.
	SaveDeviceChange(ctx context.Context, d Device, t Transition) error
	AppendHeartbeat(ctx context.Context, h Heartbeat) error
	// PurgeDevice removes a device's record with its transitions and
	// heartbeats, only if the stored version is at most version (a newer
	// save means the device is back), and returns once that is committed.
	PurgeDevice(ctx context.Context, deviceID string, version int64) error
	Flush(ctx context.Context) error
}

// User is a hub account (docs/api.md §5).
type User struct {
	ID           int64
	Username     string
	Email        string
	FullName     string
	Role         string
	IsActive     bool
	PasswordHash string
	TokenVersion int64
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Errors of user persistence.
var (
	ErrDuplicate = errors.New("duplicate")
	ErrSetupDone = errors.New("a user already exists")
	ErrLastAdmin = errors.New("change would leave no active admin")
)

// Users is what the auth service needs from persistence. Writes wait for
// their commit: account changes must be durable before the reply.
type Users interface {
	CreateFirstUser(ctx context.Context, u User) (User, error)
	CreateUser(ctx context.Context, u User) (User, error)
	GetUser(ctx context.Context, id int64) (User, error)
	FindUserByLogin(ctx context.Context, login string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser and DeleteUser fail with ErrLastAdmin when the change would
	// leave no active admin; the check runs in the same transaction.
	UpdateUser(ctx context.Context, u User) error
	DeleteUser(ctx context.Context, id int64) error
	CountUsers(ctx context.Context) (int, error)
	BlacklistToken(ctx context.Context, jti string, expires time.Time) error
	LoadBlacklist(ctx context.Context, now time.Time) (map[string]time.Time, error)
	PurgeBlacklist(ctx context.Context, now time.Time) (int64, error)
}

// AuditEntry is one audit log record (docs/api.md §14).
type AuditEntry struct {
	ID               string         `json:"id"`
	EventType        string         `json:"event_type"`
	Severity         string         `json:"severity"`
	SourceType       string         `json:"source_type"`
	SourceID         string         `json:"source_id"`
	Status           string         `json:"status"`
	Message          string         `json:"message"`
	Details          map[string]any `json:"details"`
	ErrorCode        string         `json:"error_code"`
	ErrorDescription string         `json:"error_description"`
	IPAddress        string         `json:"ip_address"`
	UserAgent        string         `json:"user_agent"`
	CorrelationID    string         `json:"correlation_id"`
	CreatedAt        time.Time      `json:"created_at"`
}

// AuditFilter selects audit entries; zero fields do not restrict.
type AuditFilter struct {
	EventTypes []string
	Severities []string
	SourceType string
	SourceID   string
	Status     string
	ErrorCode  string
	Start, End time.Time
	Offset     int
	Limit      int
}

// Audit is the audit log's persistence.
type Audit interface {
	// AppendAudit queues an entry; Flush waits until every queued entry is
	// committed.
	AppendAudit(ctx context.Context, e AuditEntry) error
	Flush(ctx context.Context) error
	QueryAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, int, error)
	AuditCounts(ctx context.Context, since time.Time) (
		bySeverity, byType map[string]int,
		oldest, newest *time.Time,
		err error,
	)
	DeleteAudit(ctx context.Context, severity string, before time.Time, keepTypes []string, limit int) (int64, error)
	GetSetting(ctx context.Context, key string) (string, bool, error)
	PutSetting(ctx context.Context, key, value string) error
}

// Doc is a domain object persisted as a JSON document under its identity.
type Doc struct {
	ID        string
	EspID     string
	GPIO      int
	Kind      string // sensor type, or another discriminator
	Address   string
	JSON      []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SeriesKey identifies a sensor series (docs/domain.md §2.2 sensor identity).
type SeriesKey struct {
	EspID      string
	GPIO       int
	SensorType string
	Address    string
}

// Reading is one stored sensor reading.
type Reading struct {
	SeriesID    int64
	TS          int64 // reading time, unix ms
	Raw         float64
	Processed   *float64
	Unit        string
	Quality     string
	Mode        string
	DeviceValue *float64
	TimeSource  string
	ReceivedAt  int64 // unix ms
	Source      string
	ZoneID      string
	SubzoneID   string
}

// Usable reports whether a reading counts for rollups and thresholds.
func (r Reading) Usable() bool { return r.Quality != "error" }

// RawRow is a reading with its series identity, for queries.
type RawRow struct {
	Reading
	Key SeriesKey
}

// Bucket is one aggregated time bucket of a series.
type Bucket struct {
	Start          int64 // unix ms
	N, NP          int64
	SumRaw, SumP   float64
	MinRaw, MaxRaw *float64
	MinP, MaxP     *float64
}

// Sample is one value of a series in time order, for a replay: a raw
// reading, or a 1-minute rollup's average of the processed values.
type Sample struct {
	// TS is the reading time (unix ms); for a minute average, the time of
	// the minute's last usable reading.
	TS int64
	// Value is the processed value; nil for a reading without one.
	Value   *float64
	Quality string
	// Bucket is a minute average's bucket start (unix ms); 0 for a raw reading.
	Bucket int64
}

// Alert is one alert lifecycle (docs/domain.md §3.3); notifications are its per-user copies.
type Alert struct {
	ID             string
	Key            string
	Severity       string
	Category       string
	Source         string
	Title          string
	Body           string
	Metadata       []byte // JSON
	Status         string
	Suppressed     bool
	Occurrences    int64
	CreatedAt      time.Time
	UpdatedAt      time.Time
	AcknowledgedAt *time.Time
	AcknowledgedBy string
	ResolvedAt     *time.Time
	ResolvedBy     string
	// NotifyUsers are users who get a notification copy when it is saved.
	NotifyUsers []int64
}

// Notification is a user's copy of an alert.
type Notification struct {
	Alert
	ID      string
	UserID  int64
	IsRead  bool
	ReadAt  *time.Time
	Channel string
}

// NotificationFilter selects notifications of one user.
type NotificationFilter struct {
	UserID                             int64
	ID                                 string
	Severity, Category, Source, Status string
	IsRead                             *bool
	Offset, Limit                      int
}

// RawQuery selects raw readings.
type RawQuery struct {
	Series     []int64
	Start, End int64 // unix ms, [Start, End]
	Before     int64 // 0 = no cursor
	Quality    string
	Source     string
	Limit      int
	Asc        bool
}
