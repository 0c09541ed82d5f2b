// Plain node, CommonJS: require() gets the CommonJS build, whose classes work like the ESM build's.
const { CreditgateClient, NotFoundError } = require('@creditgate/client');

async function main() {
  const [baseUrl, apiKey, teamId] = process.argv.slice(2);
  const client = new CreditgateClient({ baseUrl, apiKey });
  const balance = await client.getBalance(teamId);
  const missing = await client.getJob('job_000000000000000000000').catch((error) => error);
  console.log(JSON.stringify({
    resolved: require.resolve('@creditgate/client'),
    balance: balance.balance,
    notFound: missing instanceof NotFoundError,
    requestId: typeof missing.requestId === 'string',
  }));
}
main().catch((error) => {
  console.error(error);
  process.exit(1);
});
