provider "aws" "main" {
  region = "us-east-1
}
