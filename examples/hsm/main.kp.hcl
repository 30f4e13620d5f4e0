# keyplan with a PKCS#11 HSM as the key source: keys are generated inside the token, never
# leave it in the clear, and are wrapped inside it for each cloud. This sketch points at a
# SoftHSM2 development token (see README.md); for a real HSM, change `module`, `token_label`
# and drop `module_env`.

keyplan {
  state "local" {
    path = "keyplan.kpstate.json"
  }
}

source "pkcs11" "hsm" {
  module      = "/usr/lib/softhsm/libsofthsm2.so"
  token_label = "keyplan-dev"
  pin_env     = "KEYPLAN_HSM_PIN" # the PIN itself never appears in configuration

  # SoftHSM reads its configuration file when the library initialises.
  module_env = {
    SOFTHSM2_CONF = ".keyplan/hsm/softhsm2.conf"
  }

  # key_label_prefix  = "keyplan"  # CKA_LABEL of keyplan's objects: keyplan:<address>:v<version>
  # wrap_with_trusted = true       # keys wrap only under keys the security officer trusted
}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "payments" {
  algorithm = "AES_256"
  source    = source.pkcs11.hsm
  targets   = [provider.aws.main]
  labels = {
    app = "payments"
  }
}
