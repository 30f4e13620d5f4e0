locals {
  a = lenght("x")
  b = lookup({})
  c = upper([1])
  d = format("%d", "x")
}
