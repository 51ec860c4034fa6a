// The local EVM the node's chain tests run against (`npx hardhat node`).
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      mining: { auto: true },
      accounts: { count: 5 },
    },
  },
};
