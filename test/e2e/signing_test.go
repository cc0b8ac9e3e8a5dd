package e2e

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSignBlobAndJWT: IAM Credentials' signBlob and signJwt sign with the
// account's own key, which anyone can fetch to verify; a principal without
// the permission is refused; and a signed JWT, whatever it claims, is no
// credential for Usher (not for a service, not for the admin API).
func TestSignBlobAndJWT(t *testing.T) {
	s := startServer(t)
	u := s.deploy(t, "signed", helloBin)
	sa := s.createSA(t, "signer")
	stranger := s.createSA(t, "not-signer")
	owner := s.accessToken(t)
	name := "/v1/projects/-/serviceAccounts/" + sa

	r := s.apiCall(t, owner, "POST", name+":signBlob", map[string]any{"payload": base64.StdEncoding.EncodeToString([]byte("hello"))})
	var blob struct {
		KeyID      string `json:"keyId"`
		SignedBlob []byte `json:"signedBlob"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &blob) != nil {
		t.Fatalf("signBlob: %d %s", r.status, r.body)
	}
	// Anyone may fetch the key (no credentials), as Google publishes it.
	certs := map[string]string{}
	if r := s.get(t, s.serverURL(t)+"/service_accounts/v1/metadata/x509/"+sa); r.status != 200 || json.Unmarshal([]byte(r.body), &certs) != nil {
		t.Fatalf("x509 keys: %d %s", r.status, r.body)
	}
	block, _ := pem.Decode([]byte(certs[blob.KeyID]))
	if block == nil {
		t.Fatalf("no certificate for key %s: %v", blob.KeyID, certs)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := cert.PublicKey.(*rsa.PublicKey)
	sum := sha256.Sum256([]byte("hello"))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], blob.SignedBlob); err != nil {
		t.Errorf("signBlob's signature does not verify with the published key: %v", err)
	}
	if r := s.get(t, s.serverURL(t)+"/service_accounts/v1/metadata/jwk/"+sa); r.status != 200 || !strings.Contains(r.body, blob.KeyID) {
		t.Errorf("jwk keys: %d %s", r.status, r.body)
	}

	// A JWT claiming to be Usher's identity token for the owner, for the
	// service: signed, but no credential anywhere.
	iss := s.serverURL(t)
	forged := fmt.Sprintf(`{"iss":%q,"sub":"owner","email":"owner@usher.localhost","email_verified":true,"aud":%q,"iat":%d,"exp":%d}`,
		iss, u, time.Now().Unix(), time.Now().Add(time.Hour).Unix())
	r = s.apiCall(t, owner, "POST", name+":signJwt", map[string]any{"payload": forged})
	var signed struct {
		KeyID     string `json:"keyId"`
		SignedJwt string `json:"signedJwt"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &signed) != nil || strings.Count(signed.SignedJwt, ".") != 2 {
		t.Fatalf("signJwt: %d %s", r.status, r.body)
	}
	if got := s.get(t, u+"/", "Authorization", bearer(signed.SignedJwt)); got.status != 401 {
		t.Errorf("a signJwt JWT at the gateway: %d, want 401", got.status)
	}
	if got := s.apiCall(t, signed.SignedJwt, "GET", "/v1/projects/"+project+"/serviceAccounts", nil); got.status != 401 {
		t.Errorf("a signJwt JWT at the admin API: %d, want 401", got.status)
	}
	// exp is at most 12 hours away; without one, an hour from now (Google's rule).
	r = s.apiCall(t, owner, "POST", name+":signJwt", map[string]any{"payload": `{"sub":"x"}`})
	if r.status != 200 || json.Unmarshal([]byte(r.body), &signed) != nil {
		t.Fatalf("signJwt without exp: %d %s", r.status, r.body)
	}
	if exp, _ := claims(t, signed.SignedJwt)["exp"].(float64); exp < float64(time.Now().Add(50*time.Minute).Unix()) || exp > float64(time.Now().Add(70*time.Minute).Unix()) {
		t.Errorf("signJwt without exp: exp %v, want an hour from now", exp)
	}
	for _, bad := range []string{`{"exp":"soon"}`, fmt.Sprintf(`{"exp":%d}`, time.Now().Add(13*time.Hour).Unix()), fmt.Sprintf(`{"exp":%d}`, time.Now().Add(-time.Minute).Unix()), `not json`} {
		if r := s.apiCall(t, owner, "POST", name+":signJwt", map[string]any{"payload": bad}); r.status != 400 {
			t.Errorf("signJwt of %s: %d, want 400", bad, r.status)
		}
	}
	// Without iam.serviceAccounts.signBlob/signJwt on the account: refused.
	as := s.accessToken(t, "--impersonate-service-account="+stranger)
	if r := s.apiCall(t, as, "POST", name+":signBlob", map[string]any{"payload": "aGk="}); r.status != 403 {
		t.Errorf("signBlob without the permission: %d %s, want 403", r.status, r.body)
	}
	if r := s.apiCall(t, as, "POST", name+":signJwt", map[string]any{"payload": forged}); r.status != 403 {
		t.Errorf("signJwt without the permission: %d %s, want 403", r.status, r.body)
	}
	// An unknown account publishes nothing.
	if r := s.get(t, s.serverURL(t)+"/service_accounts/v1/metadata/x509/nobody@"+project+".iam.gserviceaccount.com"); r.status != 200 || strings.TrimSpace(r.body) != "{}" {
		t.Errorf("keys of an unknown account: %d %s", r.status, r.body)
	}
}
