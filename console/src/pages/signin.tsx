import { AdminClient } from '@creditgate/client';
import { useState } from 'preact/hooks';
import { anonymous, signIn, useAction, useData } from '../api';
import { ErrorNote, Field, valueOf } from '../components';

/**
 * Sign in with an admin user's email and password (a JWT) or with the master key. On the first run (no admin user
 * yet) the master key creates the first admin user, who is then signed in.
 */
export function SignIn() {
  const setup = useData(() => anonymous().adminUsers.exists(), []);
  const [mode, setMode] = useState<'password' | 'master'>('password');
  const firstRun = setup.data?.admin_users_exist === false;
  return (
    <main id="main" class="signin">
      <h1>creditgate console</h1>
      {firstRun && <FirstAdmin onCreated={setup.reload} />}
      <div class="card">
        <div role="tablist" aria-label="How to sign in" class="tabs">
          <button role="tab" type="button" aria-selected={mode === 'password'} onClick={() => setMode('password')}>
            Email and password
          </button>
          <button role="tab" type="button" aria-selected={mode === 'master'} onClick={() => setMode('master')}>
            Master key
          </button>
        </div>
        {mode === 'password' ? <PasswordForm /> : <MasterKeyForm />}
      </div>
    </main>
  );
}

function PasswordForm() {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const login = useAction(async () => {
    const answer = await anonymous().adminUsers.login({ email, password });
    signIn(answer.access_token);
  });
  return (
    <form
      aria-label="Sign in with email and password"
      onSubmit={(event) => {
        event.preventDefault();
        void login.run();
      }}
    >
      <Field label="Email">
        <input type="email" required autoComplete="username" value={email} onInput={(event) => setEmail(valueOf(event))} />
      </Field>
      <Field label="Password">
        <input type="password" required autoComplete="current-password" value={password} onInput={(event) => setPassword(valueOf(event))} />
      </Field>
      <ErrorNote error={login.error} />
      <button type="submit" class="primary" disabled={login.pending}>
        Sign in
      </button>
    </form>
  );
}

function MasterKeyForm() {
  const [key, setKey] = useState('');
  const check = useAction(async () => {
    // The key is checked before it is kept: a typo is an error here, not a broken session.
    await new AdminClient({ baseUrl: window.location.origin, apiKey: key, maxRetries: 0 }).adminUsers.me();
    signIn(key);
  });
  return (
    <form
      aria-label="Sign in with the master key"
      onSubmit={(event) => {
        event.preventDefault();
        void check.run();
      }}
    >
      <Field label="Master key" hint="Kept in this tab's session storage only, until you sign out or close the tab.">
        <input type="password" required autoComplete="off" value={key} onInput={(event) => setKey(valueOf(event))} />
      </Field>
      <ErrorNote error={check.error} />
      <button type="submit" class="primary" disabled={check.pending}>
        Sign in with the master key
      </button>
    </form>
  );
}

function FirstAdmin({ onCreated }: { onCreated: () => void }) {
  const [masterKey, setMasterKey] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const create = useAction(async () => {
    const master = new AdminClient({ baseUrl: window.location.origin, apiKey: masterKey, maxRetries: 0 });
    await master.adminUsers.create({ email, password });
    const answer = await anonymous().adminUsers.login({ email, password });
    signIn(answer.access_token);
    onCreated();
  });
  return (
    <section class="card" aria-labelledby="first-run-title">
      <h2 id="first-run-title">First run: create the first admin user</h2>
      <p class="muted">No admin user exists yet. The master key (printed when creditgate first started) creates one.</p>
      <form
        aria-label="Create the first admin user"
        onSubmit={(event) => {
          event.preventDefault();
          void create.run();
        }}
      >
        <Field label="Master key for setup">
          <input type="password" required autoComplete="off" value={masterKey} onInput={(event) => setMasterKey(valueOf(event))} />
        </Field>
        <Field label="New admin email">
          <input type="email" required autoComplete="username" value={email} onInput={(event) => setEmail(valueOf(event))} />
        </Field>
        <Field label="New admin password" hint="At least 12 characters.">
          <input type="password" required minLength={12} autoComplete="new-password" value={password} onInput={(event) => setPassword(valueOf(event))} />
        </Field>
        <ErrorNote error={create.error} />
        <button type="submit" class="primary" disabled={create.pending}>
          Create admin user and sign in
        </button>
      </form>
    </section>
  );
}
