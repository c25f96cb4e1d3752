package schemas

// DecodeGeneric exposes the generic decoding path to the fuzz test that
// checks it against each test's fast Decode.
var DecodeGeneric = decodeGeneric
