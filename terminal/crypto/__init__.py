"""SM2 / SM3 / SM4 (gmssl underneath) and the key files that hold them."""
