# keyplan multicloud: one AES-256 data key whose single material is imported into AWS KMS,
# Google Cloud KMS and an Azure Managed HSM, and one EC P-256 signing key imported into an
# Azure Key Vault and AWS KMS. Every endpoint is keyplan's embedded emulator of that cloud, so
# this runs on a laptop with nothing but Python; point each provider at the real cloud (drop
# `endpoint`) to do the same for real.

keyplan {
  state "local" {
    path = "keyplan.kpstate.json"
  }
}

source "software" "local" {
  keystore = ".keyplan/keystore.json"
}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

provider "gcp" "main" {
  project          = "contoso-keys"
  location         = "europe-west1"
  key_ring         = "keyplan"
  protection_level = "HSM"
  endpoint         = "embedded"
}

# A Managed HSM: the only kind of Azure vault that imports AES keys.
provider "azure" "hsm" {
  vault_url = "https://contoso-keys.managedhsm.azure.net"
  endpoint  = "embedded"
}

# A Key Vault (Premium) for the asymmetric key.
provider "azure" "vault" {
  vault_url = "https://contoso-signing.vault.azure.net"
  endpoint  = "embedded"
}

key "data" {
  algorithm = "AES_256"
  usage     = "encrypt"
  source    = source.software.local
  targets   = [provider.aws.main, provider.gcp.main, provider.azure.hsm]
  labels = {
    app         = "payments"
    environment = "prod"
  }

  rotation {
    every = "90d"
  }
}

key "signing" {
  algorithm = "EC_P256"
  usage     = "sign"
  source    = source.software.local
  targets   = [provider.azure.vault, provider.aws.main]
  labels = {
    app = "payments"
    use = "release-signing"
  }
}
