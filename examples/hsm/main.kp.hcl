# keyplan with a PKCS#11 HSM as the key source: the key is generated inside the token, never
# leaves it in the clear, and is wrapped inside it for each cloud. Here the token is a SoftHSM2
# development token made by `keyplan hsm init-dev` (run.sh does it), and the clouds are
# keyplan's embedded emulators of AWS KMS, Google Cloud KMS and an Azure Managed HSM.

keyplan {
  state "local" {
    path = "keyplan.kpstate.json"
  }
}

source "pkcs11" "hsm" {
  module      = "/usr/lib/softhsm/libsofthsm2.so"
  token_label = "keyplan"
  pin_env     = "KEYPLAN_HSM_PIN" # the PIN itself never appears in configuration

  # SoftHSM reads its configuration file when the library initialises; ./ is this directory.
  module_env = {
    SOFTHSM2_CONF = "./.keyplan/softhsm/softhsm2.conf"
  }

  # key_label_prefix  = "keyplan"  # CKA_LABEL of keyplan's objects: keyplan:<address>:v<version>
  # wrap_with_trusted = true       # wrap only under keys the security officer trusted (README.md)
}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

provider "gcp" "main" {
  project  = "keyplan-example"
  location = "europe-west1"
  key_ring = "keyplan"
  endpoint = "embedded"
}

provider "azure" "hsm" {
  # AES keys can only be imported into a Managed HSM, not into a Key Vault.
  vault_url = "https://keyplan-example.managedhsm.azure.net"
  endpoint  = "embedded"
}

key "payments" {
  algorithm = "AES_256"
  source    = source.pkcs11.hsm
  targets   = [provider.aws.main, provider.gcp.main, provider.azure.hsm]
  labels = { # Cloud KMS and Azure keep no description; labels reach all three
    app = "payments"
  }
}
