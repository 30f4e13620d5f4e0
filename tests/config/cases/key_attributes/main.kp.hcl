source "software" "main" {}
provider "aws" "main" {}
key "k" {
  algoritm  = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  targets   = []
  rotation { evry = "90d" }
}
