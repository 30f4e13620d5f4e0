source "software" "local" {}
provider "aws" "main" {
  region = "eu-west-1"
}
