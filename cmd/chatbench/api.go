package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// apiClient speaks the public HTTP API (PROTOCOL.md section 2) and nothing else.
type apiClient struct {
	http *http.Client
}

func newAPIClient() *apiClient {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	return &apiClient{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// apiError is an error answer of the API.
type apiError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// do sends one request (JSON body when in != nil) and decodes a 2xx answer into out.
// A 429 is retried after its Retry-After, up to a minute in all.
func (a *apiClient) do(ctx context.Context, method, url, token string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err := a.once(ctx, method, url, token, body, out)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests && time.Now().Before(deadline) {
			wait := max(ae.RetryAfter, 200*time.Millisecond)
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return err
	}
}

func (a *apiClient) once(ctx context.Context, method, url, token string, body []byte, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		ae := &apiError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			ae.RetryAfter = time.Duration(s) * time.Second
		}
		return ae
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, url, err)
		}
	}
	return nil
}

// user is a bench account with its session.
type user struct {
	Name  string
	ID    string
	Token string
}

const benchPassword = "chatbench-password"

// registerLogin creates the user (an existing one of that name is fine: reruns with
// the same --prefix) and logs in.
func (a *apiClient) registerLogin(ctx context.Context, base, name string) (*user, error) {
	creds := map[string]string{"username": name, "password": benchPassword}
	err := a.do(ctx, http.MethodPost, base+"/api/v1/auth/register", "", creds, nil)
	var ae *apiError
	if err != nil && (!errors.As(err, &ae) || ae.Code != "username_taken") {
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	var res struct {
		Token string `json:"token"`
		User  struct {
			ID       string `json:"id"`
			Username string `json:"username"`
		} `json:"user"`
	}
	if err := a.do(ctx, http.MethodPost, base+"/api/v1/auth/login", "", creds, &res); err != nil {
		return nil, fmt.Errorf("login %s: %w", name, err)
	}
	return &user{Name: res.User.Username, ID: res.User.ID, Token: res.Token}, nil
}

// createThread creates a thread as creator with the other members named.
func (a *apiClient) createThread(ctx context.Context, base string, creator *user, name string, members []string) (string, error) {
	var res struct {
		Thread struct {
			ID string `json:"id"`
		} `json:"thread"`
	}
	if err := a.do(ctx, http.MethodPost, base+"/api/v1/threads", creator.Token, map[string]any{"name": name, "members": members}, &res); err != nil {
		return "", fmt.Errorf("create thread %s: %w", name, err)
	}
	return res.Thread.ID, nil
}

// metrics fetches a host's /metrics page.
func (a *apiClient) metrics(ctx context.Context, base string) (*Scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: HTTP %d", base, resp.StatusCode)
	}
	return ParseScrape(resp.Body)
}

// parallel runs fn(i) for i in [0,n) on at most workers goroutines and returns the
// first error (the rest still finish).
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	if workers < 1 {
		workers = 1
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// wsURL turns a host's public http(s) URL into its /ws URL.
func wsURL(base string) string {
	switch {
	case strings.HasPrefix(base, "https://"):
		return "wss://" + strings.TrimPrefix(base, "https://") + "/ws"
	case strings.HasPrefix(base, "http://"):
		return "ws://" + strings.TrimPrefix(base, "http://") + "/ws"
	}
	return base + "/ws"
}
