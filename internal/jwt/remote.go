package jwt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// maxJWKSSize bounds what a JWKS endpoint can make us read.
const maxJWKSSize = 1 << 20

// remoteSet is a JWKS fetched from a URL, refreshed by one goroutine on
// a ticker and, rate-limited, when a token names an unknown kid. The last
// set fetched and parsed whole is kept while the endpoint fails.
//
// It does not use github.com/MicahParks/keyfunc/v3: its refresh goroutine
// (from jwkset) stops with a context but cannot be waited for, its
// unknown-kid refresh blocks the token's caller on a rate limiter for up
// to a minute (with a shorter bound, the same deadline cuts the fetch),
// and a token without kid is tried against every key of the set.
type remoteSet struct {
	url        string
	algs       []Algorithm
	client     *http.Client
	timeout    time.Duration
	minRefresh time.Duration
	log        *slog.Logger

	keys atomic.Pointer[keySets] // nil until a fetch succeeds

	fetchMu   sync.Mutex // one fetch at a time
	lastFetch time.Time  // under fetchMu

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRemoteSet(cfg VerifierConfig, algs []Algorithm) (*remoteSet, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("jwt: JWKSURL %q is not an http or https URL", cfg.JWKSURL)
	}
	r := &remoteSet{
		url:        cfg.JWKSURL,
		algs:       algs,
		client:     &http.Client{},
		timeout:    orDefault(cfg.JWKSTimeout, 10*time.Second),
		minRefresh: orDefault(cfg.JWKSMinRefreshInterval, time.Minute),
		log:        cfg.Logger,
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	// A failed first fetch is not fatal: the identity provider may be
	// down while we start, and the ticker and unknown kids retry.
	r.refresh(false)
	interval := orDefault(cfg.JWKSRefreshInterval, 15*time.Minute)
	r.wg.Add(1)
	go r.loop(interval)
	return r, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (r *remoteSet) loop(interval time.Duration) {
	defer r.wg.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-ticker.C:
			r.refresh(false)
		}
	}
}

func (r *remoteSet) close() {
	r.cancel()
	r.wg.Wait()
}

// refresh fetches the set, unless onDemand and the last fetch is more
// recent than minRefresh. It reports whether it fetched.
func (r *remoteSet) refresh(onDemand bool) bool {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	if onDemand && time.Since(r.lastFetch) < r.minRefresh {
		return false
	}
	r.lastFetch = time.Now()
	keys, err := r.fetch()
	if err != nil {
		if r.ctx.Err() == nil {
			r.log.Warn("JWKS fetch failed; keeping the keys last fetched", "url", r.url, "err", err)
		}
		return true
	}
	r.keys.Store(keys)
	return true
}

func (r *remoteSet) fetch() (*keySets, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSSize {
		return nil, errors.New("the key set is over 1 MiB")
	}
	return parseJWKS(r.algs, body)
}

// key finds the key for a token, fetching the set again, at most once per
// minRefresh, when the token's kid is not in it: that is how a rotation
// to a new key reaches us before the next tick.
func (r *remoteSet) key(alg Algorithm, hdr header) (any, error) {
	keys := r.keys.Load()
	if keys == nil {
		keys = &keySets{}
	}
	key, err := keys.key(alg, hdr)
	if err == nil || (!hdr.hasKid && r.keys.Load() != nil) {
		return key, err
	}
	if !r.refresh(true) {
		return nil, err
	}
	if keys = r.keys.Load(); keys == nil {
		return nil, err
	}
	return keys.key(alg, hdr)
}
