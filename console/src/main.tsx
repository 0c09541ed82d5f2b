import { render } from 'preact';
import { LocationProvider, Route, Router, useRoute } from 'preact-iso';
import { useToken } from './api';
import { Layout } from './components';
import { JobPage, Jobs } from './pages/jobs';
import { ModelGroups } from './pages/model-groups';
import { OrganizationPage, Organizations } from './pages/organizations';
import { Overview } from './pages/overview';
import { SignIn } from './pages/signin';
import { TeamPage } from './pages/team';
import { Teams } from './pages/teams';
import { WebhookEndpointPage, Webhooks } from './pages/webhooks';
import './styles.css';

/** Routes take their ids from the path; every page is a deep link the server answers with this app. */
const withId = (Component: (props: { id: string }) => preact.JSX.Element) =>
  function Routed() {
    const { params } = useRoute();
    return <Component key={params.id} id={decodeURIComponent(params.id ?? '')} />;
  };

const TeamRoute = withId(TeamPage);
const OrganizationRoute = withId(OrganizationPage);
const JobRoute = withId(JobPage);
const WebhookEndpointRoute = withId(WebhookEndpointPage);

function NotFound() {
  return (
    <>
      <h1>Not found</h1>
      <p>
        <a href="/console/">Back to the overview</a>
      </p>
    </>
  );
}

function App() {
  const token = useToken();
  if (!token) return <SignIn />;
  return (
    <Layout>
      <Router>
        <Route path="/console" component={Overview} />
        <Route path="/console/" component={Overview} />
        <Route path="/console/organizations" component={Organizations} />
        <Route path="/console/organizations/:id" component={OrganizationRoute} />
        <Route path="/console/teams" component={Teams} />
        <Route path="/console/teams/:id" component={TeamRoute} />
        <Route path="/console/model-groups" component={ModelGroups} />
        <Route path="/console/jobs" component={Jobs} />
        <Route path="/console/jobs/:id" component={JobRoute} />
        <Route path="/console/webhooks" component={Webhooks} />
        <Route path="/console/webhooks/:id" component={WebhookEndpointRoute} />
        <Route default component={NotFound} />
      </Router>
    </Layout>
  );
}

render(
  <LocationProvider scope="/console">
    <App />
  </LocationProvider>,
  document.getElementById('app')!,
);
