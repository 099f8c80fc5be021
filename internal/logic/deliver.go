package logic

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"strings"
	"time"

	"github.com/kaiserhub/kaiser/internal/notify"
)

// webhookPayload is the body of a webhook (docs/domain.md §3.4).
type webhookPayload struct {
	Title         string         `json:"title"`
	Body          string         `json:"body"`
	Severity      string         `json:"severity"`
	Category      string         `json:"category"`
	Source        string         `json:"source"`
	CorrelationID *string        `json:"correlation_id"`
	Metadata      map[string]any `json:"metadata"`
	Timestamp     string         `json:"timestamp"`
}

func webhookBody(spec notify.Spec, now time.Time) webhookPayload {
	var corr *string
	if spec.Key != "" {
		corr = &spec.Key
	}
	return webhookPayload{
		Title:         spec.Title,
		Body:          spec.Body,
		Severity:      spec.Severity,
		Category:      spec.Category,
		Source:        spec.Source,
		CorrelationID: corr,
		Metadata:      spec.Metadata,
		Timestamp:     now.UTC().Format(time.RFC3339),
	}
}

// webhooks posts JSON with the retries of docs/domain.md §3.4: up to three
// attempts with back-off; a non-2xx answer or a timeout is a failure.
type webhooks struct {
	client  *http.Client
	backoff []time.Duration
}

// post delivers body; ctx ends with the engine, cutting a delivery short.
func (w *webhooks) post(ctx context.Context, url string, body webhookPayload) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	var last error
	for attempt := 0; attempt <= len(w.backoff); attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(w.backoff[attempt-1]):
			case <-ctx.Done():
				return fmt.Errorf("hub stopping: %w", last)
			}
		}
		if last = w.once(ctx, url, data); last == nil {
			return nil
		}
	}
	return fmt.Errorf("webhook failed after %d attempts: %w", len(w.backoff)+1, last)
}

func (w *webhooks) once(ctx context.Context, url string, data []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// mailer sends e-mail actions through the configured relay.
type mailer struct {
	cfg SMTP
}

func (m *mailer) enabled() bool { return m.cfg.Addr != "" && m.cfg.From != "" }

// send delivers one message, within the relay timeout or until ctx ends;
// STARTTLS is used when the relay offers it, and credentials are sent only
// over TLS.
func (m *mailer) send(ctx context.Context, to string, spec notify.Spec) error {
	timeout := m.cfg.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", m.cfg.Addr)
	if err != nil {
		return fmt.Errorf("smtp dial: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(m.cfg.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp greeting: %w", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host}); err != nil {
			return fmt.Errorf("smtp starttls: %w", err)
		}
	}
	if m.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.cfg.Password, host)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.Mail(m.cfg.From); err != nil {
		return fmt.Errorf("smtp from: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp to %s: %w", to, err)
	}
	wc, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	if _, err := wc.Write(message(m.cfg.From, to, spec)); err != nil {
		return fmt.Errorf("smtp body: %w", err)
	}
	if err := wc.Close(); err != nil {
		return fmt.Errorf("smtp end of data: %w", err)
	}
	if err := c.Quit(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("smtp quit: %w", err)
	}
	return nil
}

// message is a plain-text message; header values lose line breaks so a
// rule name cannot add headers.
func message(from, to string, spec notify.Spec) []byte {
	clean := strings.NewReplacer("\r", " ", "\n", " ")
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", clean.Replace(from))
	fmt.Fprintf(&b, "To: %s\r\n", clean.Replace(to))
	fmt.Fprintf(&b, "Subject: [%s] %s\r\n", clean.Replace(spec.Severity), clean.Replace(spec.Title))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(strings.ReplaceAll(spec.Body, "\n", "\r\n"))
	b.WriteString("\r\n")
	return b.Bytes()
}
