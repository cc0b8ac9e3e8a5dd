// Package grpcapi serves Usher's admin API over gRPC, on the same listener
// as the REST API (HTTP/2: over TLS by ALPN, or h2c), for Google's default
// Go clients: run.NewServicesClient (Cloud Run Admin API v2: services and
// their long-running operations) and credentials.NewIamCredentialsClient
// (IAM Service Account Credentials), used with option.WithEndpoint and the
// same credentials as REST.
//
// Each RPC is replayed, in process, as the REST call Google maps it to
// (its google.api.http rule), through the REST API's own handler: the
// request message becomes the JSON body (protojson), the caller's
// "authorization" metadata its Authorization header, and the JSON answer
// the response message. So authentication, every permission check and
// every validation are the REST API's, decided in the one place they are
// decided; an error in Google's JSON shape becomes the gRPC status with the
// same code and message.
package grpcapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// maxMessage bounds a request message, as the REST API bounds a body.
const maxMessage = 4 << 20

// Server is the gRPC API in front of a REST handler.
type Server struct {
	rest http.Handler
	grpc *grpc.Server
}

// New returns the gRPC API replaying calls on rest.
func New(rest http.Handler) *Server {
	s := &Server{rest: rest, grpc: grpc.NewServer(grpc.MaxRecvMsgSize(maxMessage))}
	runpb.RegisterServicesServer(s.grpc, services{s})
	longrunningpb.RegisterOperationsServer(s.grpc, operations{s})
	credentialspb.RegisterIAMCredentialsServer(s.grpc, credentials{s})
	return s
}

// IsGRPC reports whether r is a gRPC call (HTTP/2, Content-Type
// application/grpc[+proto]).
func IsGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

type hostKey struct{}

// ServeHTTP serves one gRPC call.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.grpc.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), hostKey{}, r.Host)))
}

// Stop ends every call.
func (s *Server) Stop() { s.grpc.Stop() }

// call replays one RPC as method path?query with body (nil: none) and reads
// the answer into out (nil: none expected).
func (s *Server) call(ctx context.Context, method, path string, query url.Values, body proto.Message, out proto.Message) error {
	var payload []byte
	if body != nil {
		b, err := protojson.Marshal(body)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "request: %v", err)
		}
		payload = b
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(payload))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Host, _ = ctx.Value(hostKey{}).(string)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) == 1 {
			req.Header.Set("Authorization", v[0])
		}
		if v := md.Get("x-goog-user-project"); len(v) == 1 {
			req.Header.Set("X-Goog-User-Project", v[0])
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		req.RemoteAddr = p.Addr.String()
	}
	rec := &recorder{header: http.Header{}}
	s.rest.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	if rec.code >= 300 {
		return statusOf(rec.code, rec.body.Bytes())
	}
	if out == nil {
		return nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(rec.body.Bytes(), out); err != nil {
		return status.Errorf(codes.Internal, "answer of %s %s: %v", method, path, err)
	}
	return nil
}

// statusOf turns an error answer in Google's JSON shape into a gRPC status.
func statusOf(httpCode int, body []byte) error {
	var e struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return status.Errorf(codeOfHTTP(httpCode), "HTTP %d: %s", httpCode, strings.TrimSpace(string(body)))
	}
	code, ok := codeOfName[e.Error.Status]
	if !ok {
		code = codeOfHTTP(httpCode)
	}
	return status.Error(code, e.Error.Message)
}

var codeOfName = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[strings.ToUpper(snake(c.String()))] = c
	}
	m["CANCELLED"] = codes.Canceled
	return m
}()

// snake turns "InvalidArgument" into "invalid_argument".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

func codeOfHTTP(c int) codes.Code {
	switch c {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.Aborted
	case http.StatusPreconditionFailed:
		return codes.FailedPrecondition
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}

// recorder keeps what the REST handler answered.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}

// resource checks that name is a resource path of the API (no climbing,
// no query), so it can be placed in a REST path as is.
func resource(field, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "?#%\\ \t\r\n") || strings.Contains(name, "..") || strings.HasPrefix(name, "/") {
		return "", status.Errorf(codes.InvalidArgument, "%s %q is not a resource name", field, name)
	}
	return name, nil
}

// services is runpb.ServicesServer.
type services struct{ s *Server }

func (v services) CreateService(ctx context.Context, r *runpb.CreateServiceRequest) (*longrunningpb.Operation, error) {
	parent, err := resource("parent", r.GetParent())
	if err != nil {
		return nil, err
	}
	q := url.Values{"serviceId": {r.GetServiceId()}}
	if r.GetValidateOnly() {
		q.Set("validateOnly", "true")
	}
	op := &longrunningpb.Operation{}
	return op, v.s.call(ctx, http.MethodPost, "/v2/"+parent+"/services", q, r.GetService(), op)
}

func (v services) GetService(ctx context.Context, r *runpb.GetServiceRequest) (*runpb.Service, error) {
	name, err := resource("name", r.GetName())
	if err != nil {
		return nil, err
	}
	out := &runpb.Service{}
	return out, v.s.call(ctx, http.MethodGet, "/v2/"+name, nil, nil, out)
}

func (v services) ListServices(ctx context.Context, r *runpb.ListServicesRequest) (*runpb.ListServicesResponse, error) {
	parent, err := resource("parent", r.GetParent())
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if r.GetPageSize() > 0 {
		q.Set("pageSize", strconv.Itoa(int(r.GetPageSize())))
	}
	if r.GetPageToken() != "" {
		q.Set("pageToken", r.GetPageToken())
	}
	if r.GetShowDeleted() {
		q.Set("showDeleted", "true")
	}
	out := &runpb.ListServicesResponse{}
	return out, v.s.call(ctx, http.MethodGet, "/v2/"+parent+"/services", q, nil, out)
}

func (v services) UpdateService(ctx context.Context, r *runpb.UpdateServiceRequest) (*longrunningpb.Operation, error) {
	name, err := resource("service.name", r.GetService().GetName())
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if r.GetAllowMissing() {
		q.Set("allowMissing", "true")
	}
	if r.GetValidateOnly() {
		q.Set("validateOnly", "true")
	}
	if m := r.GetUpdateMask(); m != nil && len(m.GetPaths()) > 0 {
		q.Set("updateMask", strings.Join(m.GetPaths(), ","))
	}
	op := &longrunningpb.Operation{}
	return op, v.s.call(ctx, http.MethodPatch, "/v2/"+name, q, r.GetService(), op)
}

func (v services) DeleteService(ctx context.Context, r *runpb.DeleteServiceRequest) (*longrunningpb.Operation, error) {
	name, err := resource("name", r.GetName())
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if r.GetEtag() != "" {
		q.Set("etag", r.GetEtag())
	}
	if r.GetValidateOnly() {
		q.Set("validateOnly", "true")
	}
	op := &longrunningpb.Operation{}
	return op, v.s.call(ctx, http.MethodDelete, "/v2/"+name, q, nil, op)
}

func (v services) GetIamPolicy(ctx context.Context, r *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	name, err := resource("resource", r.GetResource())
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if n := r.GetOptions().GetRequestedPolicyVersion(); n > 0 {
		q.Set("options.requestedPolicyVersion", strconv.Itoa(int(n)))
	}
	out := &iampb.Policy{}
	return out, v.s.call(ctx, http.MethodGet, "/v2/"+name+":getIamPolicy", q, nil, out)
}

func (v services) SetIamPolicy(ctx context.Context, r *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	name, err := resource("resource", r.GetResource())
	if err != nil {
		return nil, err
	}
	body := proto.Clone(r).(*iampb.SetIamPolicyRequest)
	body.Resource = ""
	out := &iampb.Policy{}
	return out, v.s.call(ctx, http.MethodPost, "/v2/"+name+":setIamPolicy", nil, body, out)
}

func (v services) TestIamPermissions(ctx context.Context, r *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	name, err := resource("resource", r.GetResource())
	if err != nil {
		return nil, err
	}
	body := proto.Clone(r).(*iampb.TestIamPermissionsRequest)
	body.Resource = ""
	out := &iampb.TestIamPermissionsResponse{}
	return out, v.s.call(ctx, http.MethodPost, "/v2/"+name+":testIamPermissions", nil, body, out)
}

// operations is longrunningpb.OperationsServer, for the v2 API's
// operations (projects/P/locations/R/operations/ID).
type operations struct {
	s *Server
}

func (v operations) ListOperations(ctx context.Context, r *longrunningpb.ListOperationsRequest) (*longrunningpb.ListOperationsResponse, error) {
	name, err := resource("name", r.GetName())
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if r.GetPageSize() > 0 {
		q.Set("pageSize", strconv.Itoa(int(r.GetPageSize())))
	}
	if r.GetPageToken() != "" {
		q.Set("pageToken", r.GetPageToken())
	}
	if r.GetFilter() != "" {
		q.Set("filter", r.GetFilter())
	}
	out := &longrunningpb.ListOperationsResponse{}
	return out, v.s.call(ctx, http.MethodGet, "/v2/"+strings.TrimSuffix(name, "/operations")+"/operations", q, nil, out)
}

func (v operations) GetOperation(ctx context.Context, r *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	name, err := resource("name", r.GetName())
	if err != nil {
		return nil, err
	}
	out := &longrunningpb.Operation{}
	return out, v.s.call(ctx, http.MethodGet, "/v2/"+name, nil, nil, out)
}

func (v operations) DeleteOperation(ctx context.Context, r *longrunningpb.DeleteOperationRequest) (*emptypb.Empty, error) {
	name, err := resource("name", r.GetName())
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, v.s.call(ctx, http.MethodDelete, "/v2/"+name, nil, nil, nil)
}

func (v operations) CancelOperation(ctx context.Context, r *longrunningpb.CancelOperationRequest) (*emptypb.Empty, error) {
	return nil, status.Error(codes.Unimplemented, "Usher's operations finish before they are answered, or cannot be cancelled")
}

func (v operations) WaitOperation(ctx context.Context, r *longrunningpb.WaitOperationRequest) (*longrunningpb.Operation, error) {
	name, err := resource("name", r.GetName())
	if err != nil {
		return nil, err
	}
	body := &longrunningpb.WaitOperationRequest{Timeout: r.GetTimeout()}
	out := &longrunningpb.Operation{}
	return out, v.s.call(ctx, http.MethodPost, "/v2/"+name+":wait", nil, body, out)
}

// credentials is credentialspb.IAMCredentialsServer (names:
// projects/-/serviceAccounts/EMAIL).
type credentials struct {
	s *Server
}

func (v credentials) method(ctx context.Context, name, method string, r proto.Message, out proto.Message) error {
	n, err := resource("name", name)
	if err != nil {
		return err
	}
	body := proto.Clone(r)
	// The name is the path's; the body carries the rest.
	if f := body.ProtoReflect().Descriptor().Fields().ByName("name"); f != nil {
		body.ProtoReflect().Clear(f)
	}
	return v.s.call(ctx, http.MethodPost, fmt.Sprintf("/v1/%s:%s", n, method), nil, body, out)
}

func (v credentials) GenerateAccessToken(ctx context.Context, r *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
	out := &credentialspb.GenerateAccessTokenResponse{}
	return out, v.method(ctx, r.GetName(), "generateAccessToken", r, out)
}

func (v credentials) GenerateIdToken(ctx context.Context, r *credentialspb.GenerateIdTokenRequest) (*credentialspb.GenerateIdTokenResponse, error) {
	out := &credentialspb.GenerateIdTokenResponse{}
	return out, v.method(ctx, r.GetName(), "generateIdToken", r, out)
}

func (v credentials) SignBlob(ctx context.Context, r *credentialspb.SignBlobRequest) (*credentialspb.SignBlobResponse, error) {
	out := &credentialspb.SignBlobResponse{}
	return out, v.method(ctx, r.GetName(), "signBlob", r, out)
}

func (v credentials) SignJwt(ctx context.Context, r *credentialspb.SignJwtRequest) (*credentialspb.SignJwtResponse, error) {
	out := &credentialspb.SignJwtResponse{}
	return out, v.method(ctx, r.GetName(), "signJwt", r, out)
}
