package http

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/iotnode/iotnode/ports"
)

// Token scopes (protocol.md §1).
const (
	// scopeActivation may call only the activation policy and direct
	// activation, with the activation identity (HS256).
	scopeActivation = "oracle/iot/activation"
	// scopeDefault is the empty scope, for every other call, with the
	// endpoint identity (RS256).
	scopeDefault = ""

	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

	// maxTokenMargin is how long before its expiry a cached token is renewed
	// at most; short-lived tokens are renewed when 90% of their life passed.
	maxTokenMargin = time.Minute
)

// token is an access token for one scope.
type token struct {
	authorization string    // "<token_type> <access_token>"
	id            string    // activation or endpoint ID it was issued to
	refreshAt     time.Time // zero: use for one call, do not cache
}

func scopeName(s string) string {
	if s == scopeDefault {
		return "default"
	}
	return s
}

// token returns a valid token for scope, from the cache or from the token
// endpoint. One token call per scope runs at a time; the others wait for it
// within their contexts and then use what it cached.
func (c *Client) token(ctx context.Context, op, scope string) (*token, error) {
	if t := c.cachedToken(scope); t != nil {
		return t, nil
	}
	slot := c.fetching[scope]
	select {
	case slot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: wait for an access token: %w", op, ctx.Err())
	}
	defer func() { <-slot }()
	if t := c.cachedToken(scope); t != nil {
		return t, nil
	}
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	t, err := c.fetchToken(ctx, op, scope)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	// A token fetched while activation changed the identity is not kept.
	if !t.refreshAt.IsZero() && gen == c.gen {
		c.tokens[scope] = t
	}
	c.mu.Unlock()
	return t, nil
}

func (c *Client) cachedToken(scope string) *token {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tokens[scope]
	if t == nil || !c.clock.Now().Before(t.refreshAt) {
		return nil
	}
	return t
}

// dropToken forgets t if it is still the cached token of scope.
func (c *Client) dropToken(scope string, t *token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens[scope] == t {
		delete(c.tokens, scope)
	}
}

// dropTokens forgets every token: the identity changed (activation).
func (c *Client) dropTokens() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.tokens)
	c.gen++
}

// identity reads the trusted assets and returns who signs the assertion
// for scope.
func (c *Client) identity(op, scope string) (identity, error) {
	fail := func(permanent bool, format string, args ...any) (identity, error) {
		return identity{}, &ports.CloudError{Op: op, Permanent: permanent, Index: -1, Err: fmt.Errorf(format, args...)}
	}
	a, err := c.trust.Load()
	if err != nil {
		return fail(false, "load trusted assets: %w", err)
	}
	if scope == scopeActivation {
		if a.ClientID == "" || len(a.SharedSecret) == 0 {
			return fail(true, "the provisioning file lacks the client ID or the shared secret needed to activate")
		}
		return identity{id: a.ClientID, secret: a.SharedSecret}, nil
	}
	if a.EndpointID == "" {
		return identity{}, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: errNotActivated}
	}
	if len(a.PrivateKey) == 0 {
		return fail(true, "the provisioning file has endpoint ID %q but no device key; expected both after activation", a.EndpointID)
	}
	key, err := parseDeviceKey(a.PrivateKey)
	if err != nil {
		return fail(true, "%w", err)
	}
	return identity{id: a.EndpointID, key: key}, nil
}

// tokenAnswer is the token endpoint's answer; expires_in is milliseconds.
type tokenAnswer struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresIn   json.Number `json:"expires_in"`
}

// fetchToken calls the token endpoint (protocol.md §1). A 403 carrying the
// cloud's currentTime records the clock offset and repeats the call once
// with a corrected expiry.
func (c *Client) fetchToken(ctx context.Context, op, scope string) (*token, error) {
	op += ": get access token"
	id, err := c.identity(op, scope)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		now := c.clock.Now()
		assertion, err := id.assertion(now.Add(c.ClockOffset()))
		if err != nil {
			return nil, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: err}
		}
		// The field order and encoding of Oracle's JS library: ':' escaped,
		// '/' of the scope kept.
		form := "grant_type=client_credentials" +
			"&client_assertion_type=" + url.QueryEscape(assertionType) +
			"&client_assertion=" + url.QueryEscape(assertion) +
			"&scope=" + strings.ReplaceAll(url.QueryEscape(scope), "%2F", "/")
		rep, err := c.send(ctx, request{op: op, method: http.MethodPost, path: tokenPath, body: []byte(form), form: true, timeout: c.timeout}, nil)
		if err != nil {
			return nil, err
		}
		if rep.status == http.StatusForbidden && attempt == 0 {
			var e apiError
			if json.Unmarshal(rep.body, &e) == nil && e.CurrentTime > 0 {
				offset := time.UnixMilli(e.CurrentTime).Sub(now)
				c.offset.Store(int64(offset))
				c.log.Info("the cloud's clock differs from the device's: shifting token expiries", slog.Duration("offset", offset))
				continue
			}
		}
		if !rep.ok() {
			return nil, c.tokenError(op, rep, id.id, scope)
		}
		return c.parseToken(op, rep, id.id, now)
	}
}

func (c *Client) tokenError(op string, rep reply, id, scope string) error {
	ce := c.statusError(op, rep, "")
	switch rep.status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		msg, _ := errorBody(rep.status, rep.body)
		hint := "check the endpoint ID and device key of the provisioning file"
		if scope == scopeActivation {
			hint = "check the client ID and shared secret of the provisioning file; a device that is already activated cannot use them any more"
		}
		ce.Permanent = true
		ce.Err = fmt.Errorf("the cloud refused the credentials of %q: %s; %s (%w)", id, msg, hint, ports.ErrUnauthorized)
	}
	return ce
}

func (c *Client) parseToken(op string, rep reply, id string, start time.Time) (*token, error) {
	var a tokenAnswer
	if err := decodeJSON(op, rep, &a, `a token {"access_token","token_type","expires_in"}`); err != nil {
		return nil, err
	}
	if a.AccessToken == "" || strings.ContainsFunc(a.AccessToken+a.TokenType, isSpaceOrControl) {
		return nil, answerError(op, rep, "the answer has no usable access_token; expected a non-empty token without spaces")
	}
	if a.TokenType == "" {
		a.TokenType = "Bearer"
	}
	t := &token{authorization: a.TokenType + " " + a.AccessToken, id: id}
	if a.ExpiresIn != "" {
		ms, err := a.ExpiresIn.Float64()
		if err != nil {
			return nil, answerError(op, rep, "expires_in is %q; expected milliseconds", a.ExpiresIn)
		}
		const maxLife = float64(24 * time.Hour / time.Millisecond) // bounds a silly answer
		if life := time.Duration(min(ms, maxLife) * float64(time.Millisecond)); life > 0 {
			t.refreshAt = start.Add(life - min(maxTokenMargin, life/10))
		}
	}
	return t, nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }
