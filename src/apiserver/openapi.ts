// `/openapi/v2` for `kubectl apply` with validation on (kube-api-notes §2.3): kubectl proto-decodes
// the answer, so it must be protobuf (a JSON swagger gives "unexpected EOF") served as
// application/octet-stream (Go's mime parser rejects the "@" of the official type). This minimal
// gnostic Document has only swagger="2.0" and info{title,version}; kubectl then skips client-side
// validation for kinds it does not find, and the server validates with the CRD schema instead.

export const MINIMAL_OPENAPI_V2 = Buffer.from([10, 3, 50, 46, 48, 18, 10, 10, 4, 102, 97, 107, 101, 18, 2, 118, 49]);

export const OPENAPI_CONTENT_TYPE = 'application/octet-stream';
