package trust

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// Known-answer vectors. They were produced by EncodeOracle and EncodeV2 with
// katAssets, passphrase "kat passphrase" and a countingReader (starting at 0x00
// for the Oracle IV, at 0x40 for the v2 salt and nonce), and then checked
// independently of Go:
//
//   - Oracle: the key from Python's hashlib.pbkdf2_hmac("sha1", passphrase,
//     IV, 10000, 16); the ciphertext decrypted by
//     "openssl enc -d -aes-128-cbc -K <key> -iv <IV>" gave katPlainHex.
//   - v2: the key from hashlib.pbkdf2_hmac("sha256", passphrase, salt, 1000,
//     32); the body opened by the Python "cryptography" package's AESGCM with
//     the header line as associated data gave katPlainHex too.
const (
	katPassphrase = "kat passphrase"
	katOracle     = "!AAECAwQFBgcICQoLDA0OD9ncYu1yWT/dgT/YZ5ThW9+aQE8MkAnMMouTRvZGp+2WuHPCfg4JW3Wh\r\n" +
		"y9dSc5mqQh7Ta7a6CWgQxBvuFB9mp5Td5gVH1gW2lyc6qmSr1YHIMKHlNXpd5EoAEKb8SQdTsQ==\n" +
		"#serverUri:https://iot.example.com:443\n" +
		"#clientId:kat-gateway-1\n"
	katOracleKeyHex = "0cbd87bd57e3e044e0b09f321842888f"
	katV2           = "iotnode-trust/2 kdf=pbkdf2-sha256 iter=1000 salt=404142434445464748494a4b4c4d4e4f aead=aes-256-gcm nonce=505152535455565758595a5b\n" +
		"ffsJFXqaNx1DMP+m+NvozIPzxm7zObTXw2PirJCFD3wem93vozOLBVdseR/cRt25tQ3Q6ADLN03C\n" +
		"05QqBZi4udC3xgdzlM0wtcHGTilyG5fxN/yggN1GF2LPOc57U+yGypps6A+VRnmQvjxffg==\n"
	katV2KeyHex = "456e601991d9e2bd54b6b30d5d68ff7bad8a3007201eef81a393616f51361b3f"
	katPlainHex = "01001b68747470733a2f2f696f742e6578616d706c652e636f6d3a343433" + // 1 server URI
		"02000d6b61742d676174657761792d31" + // 2 client ID
		"03000d7333637233742d736861726564" + // 3 shared secret
		"040004302d4145" + // 4 endpoint ID
		"0800150200056963642d3103000a6963642d736563726574" // 8 {2 icd-1, 3 icd-secret}
)

func katAssets() *Assets {
	return &Assets{
		ServerURI:    "https://iot.example.com:443",
		ClientID:     "kat-gateway-1",
		SharedSecret: []byte("s3cr3t-shared"),
		EndpointID:   "0-AE",
		Devices:      []ConnectedDevice{{HardwareID: "icd-1", SharedSecret: []byte("icd-secret")}},
	}
}

func TestKnownAnswerPayload(t *testing.T) {
	if got := hex.EncodeToString(marshalRecords(katAssets())); got != katPlainHex {
		t.Fatalf("payload = %s, want %s", got, katPlainHex)
	}
	// The key derivations, as computed by Python's hashlib.
	iv := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	if k, _ := pbkdf2.Key(sha1.New, katPassphrase, iv, oracleIterations, oracleKeyLen); hex.EncodeToString(k) != katOracleKeyHex {
		t.Errorf("oracle key = %x, want %s", k, katOracleKeyHex)
	}
	salt, _ := hex.DecodeString("404142434445464748494a4b4c4d4e4f")
	if k, _ := pbkdf2.Key(sha256.New, katPassphrase, salt, 1000, v2KeyLen); hex.EncodeToString(k) != katV2KeyHex {
		t.Errorf("v2 key = %x, want %s", k, katV2KeyHex)
	}
}

func TestKnownAnswerOracle(t *testing.T) {
	got, err := EncodeOracle(katAssets(), katPassphrase, &countingReader{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != katOracle {
		t.Fatalf("EncodeOracle =\n%q\nwant\n%q", got, katOracle)
	}
	a, f, err := Decode([]byte(katOracle), katPassphrase)
	if err != nil || f != FormatOracle {
		t.Fatalf("Decode = %v, %v", f, err)
	}
	assertAssets(t, a, katAssets())
}

func TestKnownAnswerV2(t *testing.T) {
	got, err := EncodeV2(katAssets(), katPassphrase, &countingReader{next: 0x40}, WithIterations(1000))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != katV2 {
		t.Fatalf("EncodeV2 =\n%q\nwant\n%q", got, katV2)
	}
	a, f, err := Decode([]byte(katV2), katPassphrase)
	if err != nil || f != FormatV2 {
		t.Fatalf("Decode = %v, %v", f, err)
	}
	assertAssets(t, a, katAssets())
}
